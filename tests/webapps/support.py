"""Stand-ins for the node at the outermost edge: what a node's reloader would report."""

from webapps.reload import Reloader, ReloadError, ReloadResult


class OkReloader(Reloader):
    def reload(self, webapp):
        return ReloadResult(ok=True, backend="b7", duration_ms=12, message="reloaded")


class BrokenAppReloader(Reloader):
    def reload(self, webapp):
        return ReloadResult(
            ok=False,
            backend="b7",
            duration_ms=340,
            message="the app failed to start",
            log_tail='Traceback (most recent call last):\n  File "wsgi.py"\nSyntaxError: <boom>',
        )


class UnreachableReloader(Reloader):
    def reload(self, webapp):
        raise ReloadError("node control socket refused the connection")
