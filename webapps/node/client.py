"""What the panel uses to talk to the node it runs on (through ``NODE_CONTROL_SOCKET``).

``app_logs(domain)`` gives the last lines of an app's access, error and server logs as this node
has them; the Web tab shows them for the node that serves the app (its panel answers there).
"""

from __future__ import annotations

from django.conf import settings

from webapps.node.control import ControlError, call

LOGS_TIMEOUT = 5.0
RELOAD_TIMEOUT = 90.0


def app_logs(domain: str, lines: int = 50, *, socket_path: str | None = None) -> dict[str, str]:
    """``{"access": ..., "error": ..., "server": ...}`` for the app; raises ``ControlError``."""
    path = socket_path if socket_path is not None else settings.NODE_CONTROL_SOCKET
    answer = call(path, {"op": "logs", "domain": domain, "lines": lines}, timeout=LOGS_TIMEOUT)
    if answer.get("status") != "OK" or not isinstance(answer.get("logs"), dict):
        raise ControlError(str(answer.get("message") or f"unexpected answer: {answer}"))
    return {str(k): str(v) for k, v in answer["logs"].items()}


def reload(domain: str, *, socket_path: str | None = None) -> dict:
    """Ask the node to reload the app; the node's answer (see ``webapps.node.control``)."""
    path = socket_path if socket_path is not None else settings.NODE_CONTROL_SOCKET
    return call(path, {"op": "reload", "domain": domain}, timeout=RELOAD_TIMEOUT)
