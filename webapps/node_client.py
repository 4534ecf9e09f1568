"""The panel's client of the node it runs on (through ``settings.NODE_CONTROL_SOCKET``).

Panel side: it reads Django settings, so it lives here and not under ``webapps/node/`` (which
imports no Django). It speaks the node's control protocol (``webapps.node.control``).

``app_logs(domain, backend=...)`` gives the last lines of an app's access, error and server logs
as the node that serves it has them, for the Web tab; ``reload(domain)`` asks the node to reload
an app (``webapps.reload.NodeReloader`` wraps it).
"""

from __future__ import annotations

from django.conf import settings

from routing import canonical_host
from routing.addresses import is_backend_name
from webapps.node.control import ControlError, call
from webapps.node.logs import LOG_KINDS, log_path, tail

__all__ = ["LOGS_TIMEOUT", "RELOAD_TIMEOUT", "ControlError", "app_logs", "reload"]

LOGS_TIMEOUT = 5.0
RELOAD_TIMEOUT = 90.0


def app_logs(
    domain: str, lines: int = 50, *, backend: str | None = None, socket_path: str | None = None
) -> dict[str, str]:
    """``{"access": ..., "error": ..., "server": ...}``: the app's last log lines on ``backend``.

    ``backend`` is the node that serves the app (``RouteTable.backend_for``); by default, and
    when it is this panel's own node, the node is asked over its control socket (raises
    ``ControlError`` when that fails). Another node's logs are read from its log directory,
    ``VAR_DIR/log/<backend>/`` (``runnode``'s default ``--log-dir``), which the nodes of a site
    share as they share users' code; a node with another ``--log-dir`` is only seen by its own
    panel. A log that does not exist reads as "".
    """
    if backend is None or backend == settings.NODE_NAME:
        path = socket_path if socket_path is not None else settings.NODE_CONTROL_SOCKET
        answer = call(path, {"op": "logs", "domain": domain, "lines": lines}, timeout=LOGS_TIMEOUT)
        if answer.get("status") != "OK" or not isinstance(answer.get("logs"), dict):
            raise ControlError(str(answer.get("message") or f"unexpected answer: {answer}"))
        return {str(k): str(v) for k, v in answer["logs"].items()}
    if not is_backend_name(backend):
        raise ValueError(f"{backend!r} is not a node name")
    log_dir = settings.VAR_DIR / "log" / backend
    name = canonical_host(domain)
    return {kind: tail(log_path(log_dir, name, kind), lines) for kind in LOG_KINDS}


def reload(domain: str, *, socket_path: str | None = None) -> dict:
    """Ask the node to reload the app; the node's answer (see ``webapps.node.control``)."""
    path = socket_path if socket_path is not None else settings.NODE_CONTROL_SOCKET
    return call(path, {"op": "reload", "domain": domain}, timeout=RELOAD_TIMEOUT)
