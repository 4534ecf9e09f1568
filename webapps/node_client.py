"""The panel's client of the node it runs on (through ``settings.NODE_CONTROL_SOCKET``).

Panel side: it reads Django settings, so it lives here and not under ``webapps/node/`` (which
imports no Django). It speaks the node's control protocol (``webapps.node.control``).

``app_logs(domain, backend=...)`` gives the last lines of an app's access, error and server logs
as the node that serves it has them, for the Web tab; ``reload(domain)`` asks the node to reload
an app (``webapps.reload.NodeReloader`` wraps it); ``apps_here()`` what the panel's own node runs:
each app's phase and the memory of its processes (the admin shows it).
"""

from __future__ import annotations

import base64
import threading
import time
from pathlib import Path

from django.conf import settings

from routing import canonical_host
from routing.addresses import is_backend_name
from webapps.node import logs as node_logs
from webapps.node.control import ControlError, call
from webapps.node.logs import LOG_KINDS, log_path, tail

__all__ = [
    "LOGS_TIMEOUT",
    "RELOAD_TIMEOUT",
    "ControlError",
    "app_logs",
    "apps_here",
    "delete_log",
    "log_files",
    "read_log",
    "reload",
]

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


STATUS_CACHE_SECONDS = 2.0
_status_cache: dict[str, tuple[float, dict[str, dict] | ControlError]] = {}
_status_lock = threading.Lock()


def apps_here(*, socket_path: str | None = None) -> dict[str, dict]:
    """Every app the panel's own node knows, by canonical domain: ``{"phase", "pid",
    "rss_bytes", "processes", ...}`` as in its ``status`` answer (``webapps.node.control``).

    Cached for ``STATUS_CACHE_SECONDS`` per socket, a failure too, so a page listing many apps
    asks once. Raises ``ControlError`` when the node cannot be asked.
    """
    path = str(socket_path if socket_path is not None else settings.NODE_CONTROL_SOCKET)
    now = time.monotonic()
    with _status_lock:
        hit = _status_cache.get(path)
    if hit is None or hit[0] <= now:
        try:
            answer = _ask({"op": "status"}, path)
            apps = answer.get("apps")
            if not isinstance(apps, list):
                raise ControlError(f"unexpected answer: {str(answer)[:200]}")
            found: dict[str, dict] | ControlError = {
                str(a["name"]): dict(a) for a in apps if isinstance(a, dict) and "name" in a
            }
        except ControlError as exc:
            found = exc
        hit = (now + STATUS_CACHE_SECONDS, found)
        with _status_lock:
            _status_cache[path] = hit
    if isinstance(hit[1], ControlError):
        raise hit[1]
    return hit[1]


def reload(domain: str, *, socket_path: str | None = None) -> dict:
    """Ask the node to reload the app; the node's answer (see ``webapps.node.control``)."""
    path = socket_path if socket_path is not None else settings.NODE_CONTROL_SOCKET
    return call(path, {"op": "reload", "domain": domain}, timeout=RELOAD_TIMEOUT)


# --- whole log files: listing, reading from an offset, deleting --------------------------------
# Same split as app_logs: the panel's own node answers over its control socket, another node's
# files are read in VAR_DIR/log/<backend>/.


def _ask(request: dict, socket_path: str | None) -> dict:
    path = socket_path if socket_path is not None else settings.NODE_CONTROL_SOCKET
    answer = call(path, request, timeout=LOGS_TIMEOUT)
    if answer.get("status") != "OK":
        raise ControlError(str(answer.get("message") or f"unexpected answer: {answer}"))
    return answer


def _own(backend: str | None) -> bool:
    return backend is None or backend == settings.NODE_NAME


def _log_dir(backend: str) -> Path:
    if not is_backend_name(backend):
        raise ValueError(f"{backend!r} is not a node name")
    return settings.VAR_DIR / "log" / backend


def log_files(
    domain: str, *, backend: str | None = None, socket_path: str | None = None
) -> list[dict]:
    """The app's log files on ``backend``: ``[{"kind", "index", "size", "modified"}]``."""
    if _own(backend):
        answer = _ask({"op": "log_files", "domain": domain}, socket_path)
        files = answer.get("files")
        if not isinstance(files, list):
            raise ControlError(f"unexpected answer: {answer}")
        return [dict(f) for f in files if isinstance(f, dict)]
    found = node_logs.log_files(_log_dir(backend), canonical_host(domain))
    return [
        {"kind": f.kind, "index": f.index, "size": f.size, "modified": f.modified} for f in found
    ]


def read_log(
    domain: str,
    kind: str,
    index: int = 0,
    offset: int = 0,
    limit: int = node_logs.MAX_READ_BYTES,
    *,
    backend: str | None = None,
    socket_path: str | None = None,
) -> tuple[bytes, int, int]:
    """``(data, next offset, size)`` of one log file from ``offset`` (see ``logs.read_from``)."""
    if _own(backend):
        request = {
            "op": "log_read", "domain": domain, "kind": kind, "index": index, "offset": offset,
            "limit": limit,
        }  # fmt: skip
        answer = _ask(request, socket_path)
        try:
            data = base64.b64decode(answer["data_b64"], validate=True)
            return data, int(answer["offset"]), int(answer["size"])
        except (KeyError, TypeError, ValueError):
            raise ControlError(f"unexpected answer: {str(answer)[:200]}") from None
    path = node_logs.rotated_path(log_path(_log_dir(backend), canonical_host(domain), kind), index)
    return node_logs.read_from(path, offset, limit)


def delete_log(
    domain: str,
    kind: str,
    index: int = 0,
    *,
    backend: str | None = None,
    socket_path: str | None = None,
) -> bool:
    """Delete one log file (the current one is emptied); False when there was none."""
    if _own(backend):
        request = {"op": "log_delete", "domain": domain, "kind": kind, "index": index}
        return bool(_ask(request, socket_path).get("deleted"))
    return node_logs.delete_log(_log_dir(backend), canonical_host(domain), kind, index)
