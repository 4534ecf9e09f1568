"""The node's resolver on its hot path: one Route per app, shared by the requests in flight,
and the in-flight count that draining waits on kept right across them."""

from __future__ import annotations

from webapps.node.directory import AppDirectory
from webapps.node.node import Node
from webapps.node.server import NodeResolver
from webapps.node.spec import AppSpec

SPEC = AppSpec(name="a.test", source_directory="/srv/a")


def test_requests_to_one_app_share_its_route_and_are_each_counted(supervisor_factory, loop_thread):
    sup = supervisor_factory()

    async def scenario():
        directory = AppDirectory(system={}, lookup={}.get, cache_seconds=0)
        resolver = NodeResolver(
            Node(name="b7", supervisor=sup, directory=directory), expose_name=True
        )
        try:
            first = resolver._forward("a.test", "/run/a.sock", SPEC)
            second = resolver._forward("a.test", "/run/a.sock", SPEC)
            shared = first is second
            counted = resolver.inflight["a.test"]
            first.on_done(200)
            still = await resolver.drained("a.test", 0.01)
            second.on_done(0)
            done = await resolver.drained("a.test", 0.01)
            moved = resolver._forward("a.test", "/run/a2.sock", SPEC)  # the app got a new socket
            moved.on_done(200)
            # A new timeout of the app's: a new Route, the wait for its first byte with it.
            slower_spec = AppSpec(**{**SPEC.__dict__, "timeout": 90})
            slower = resolver._forward("a.test", "/run/a2.sock", slower_spec)
            slower.on_done(200)
            timeouts = (first.first_byte_timeout, slower.first_byte_timeout, slower is moved)
            return (
                shared, counted, still, done, moved.upstreams[0].unix, dict(resolver.inflight),
                timeouts,
            )  # fmt: skip
        finally:
            resolver.guard.close()
            resolver.static.close()
            directory.close()

    shared, counted, still, done, socket, left, timeouts = loop_thread.run(scenario())
    assert shared and counted == 2
    assert still is False and done is True
    assert socket == "/run/a2.sock"
    assert left == {}
    assert timeouts == (float(sup.request_timeout), 90.0, False)
