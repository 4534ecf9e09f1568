"""A backend node: the supervisor, the app directory and the control socket, wired together.

``Node.dispatch`` answers control requests (see ``webapps.node.control``). The HTTP side and the
route-table subscription are added by ``webapps.node.server``.
"""

from __future__ import annotations

import base64
import logging
from pathlib import Path

from routing import InvalidHost, canonical_host
from webapps.node import homefs
from webapps.node.control import BadRequest
from webapps.node.directory import AppDirectory
from webapps.node.logs import (
    DEFAULT_KEEP,
    LOG_KINDS,
    MAX_READ_BYTES,
    MAX_TAIL_LINES,
    delete_log,
    log_files,
    read_from,
    rotated_path,
    tail,
)
from webapps.node.spec import AppSpec
from webapps.node.supervisor import Supervisor

log = logging.getLogger(__name__)

# The panel's reloader when it runs on a node (a dotted path the panel imports, never the node).
PANEL_RELOADER = "webapps.reload.NodeReloader"


def panel_spec(*, node_name: str, panel_host: str, control_socket: Path, base_dir: Path) -> AppSpec:
    """The panel as a system app: the project's own code and settings, told which node it is on."""
    return AppSpec(
        name=canonical_host(panel_host),
        source_directory=str(base_dir),
        wsgi_entry="panel.wsgi:application",
        system=True,
        extra_env=(
            ("DJANGO_SETTINGS_MODULE", "panel.settings"),
            ("NODE_NAME", node_name),
            ("NODE_CONTROL_SOCKET", str(control_socket)),
            ("WEBAPPS_RELOADER", PANEL_RELOADER),
        ),
        # A reload request holds a panel thread until the app answers: keep others free.
        workers=2,
        threads=4,
    )


class Node:
    def __init__(
        self,
        *,
        name: str,
        supervisor: Supervisor,
        directory: AppDirectory,
        in_force: tuple[str, ...] = (),
    ) -> None:
        self.name = name
        self.supervisor = supervisor
        self.directory = directory
        self.in_force = in_force  # the start-up lines: isolation, cgroups

    @property
    def isolation(self) -> str:
        return "on" if self.supervisor.isolated is not None else "off"

    async def dispatch(self, request: dict) -> dict:
        op = request.get("op")
        if op == "status":
            return {
                "status": "OK",
                "backend": self.name,
                "isolation": self.isolation,
                "in_force": list(self.in_force),
                "apps": self.supervisor.status(),
            }
        if op == "reload":
            return await self._reload(_domain(request))
        if op == "logs":
            return self._logs(_domain(request), _lines(request))
        if op == "log_files":
            return self._log_files(_domain(request))
        if op == "log_read":
            return self._log_read(_domain(request), request)
        if op == "log_delete":
            return self._log_delete(_domain(request), request)
        if op == "home_file":
            return self._home_file(request)
        raise BadRequest(
            f"unknown op {op!r}; one of reload, logs, log_files, log_read, log_delete, "
            "home_file, status"
        )

    def _home_file(self, request: dict) -> dict:
        """Create a file in a user's home as its owner, never through a symlink (the panel's
        starter app when the panel itself may not write into homes)."""
        owner, path, content = request.get("owner"), request.get("path"), request.get("content")
        uid, gid = request.get("uid", 0), request.get("gid", 0)
        if not isinstance(owner, str) or not owner:
            raise BadRequest("'owner' must be a username")
        if not isinstance(path, list) or not all(isinstance(p, str) for p in path):
            raise BadRequest("'path' must be a list of names")
        if not isinstance(content, str):
            raise BadRequest("'content' must be a string")
        for value in (uid, gid):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise BadRequest("'uid' and 'gid' must be non-negative integers")
        try:
            written = homefs.write_new_file(
                self.supervisor.home_root, owner, path, content.encode(), uid=uid, gid=gid
            )
        except homefs.HomePathRefused as exc:
            return {"status": "ERROR", "backend": self.name, "message": str(exc)}
        except OSError as exc:
            return {"status": "ERROR", "backend": self.name, "message": f"cannot write: {exc}"}
        return {"status": "OK", "backend": self.name, "written": written}

    async def _reload(self, domain: str) -> dict:
        spec = await self.directory.get(domain, fresh=True)
        if spec is None:
            return {
                "status": "ERROR",
                "backend": self.name,
                "duration_ms": 0,
                "message": f"no enabled app {domain} is known to node {self.name}",
                "log_tail": "",
            }
        outcome = await self.supervisor.reload(spec)
        log.info("reload %s on %s: ok=%s %s", domain, self.name, outcome.ok, outcome.message)
        return {
            "status": "OK" if outcome.ok else "ERROR",
            "backend": self.name,
            "duration_ms": outcome.duration_ms,
            "message": outcome.message,
            "log_tail": outcome.log_tail,
        }

    def _logs(self, domain: str, lines: int) -> dict:
        logs = {kind: tail(self.supervisor.log_file(domain, kind), lines) for kind in LOG_KINDS}
        return {"status": "OK", "backend": self.name, "domain": domain, "logs": logs}

    def _log_files(self, domain: str) -> dict:
        files = [
            {"kind": f.kind, "index": f.index, "size": f.size, "modified": f.modified}
            for f in log_files(self.supervisor.log_dir, domain)
        ]
        return {"status": "OK", "backend": self.name, "domain": domain, "files": files}

    def _log_read(self, domain: str, request: dict) -> dict:
        kind, index = _log_kind(request), _log_index(request)
        offset = _int(request, "offset", 0, 0, 1 << 62)
        limit = _int(request, "limit", MAX_READ_BYTES, 0, MAX_READ_BYTES)
        path = rotated_path(self.supervisor.log_file(domain, kind), index)
        data, next_offset, size = read_from(path, offset, limit)
        return {
            "status": "OK",
            "backend": self.name,
            "domain": domain,
            "data_b64": base64.b64encode(data).decode(),
            "offset": next_offset,
            "size": size,
        }

    def _log_delete(self, domain: str, request: dict) -> dict:
        kind, index = _log_kind(request), _log_index(request)
        deleted = delete_log(self.supervisor.log_dir, domain, kind, index)
        return {"status": "OK", "backend": self.name, "domain": domain, "deleted": deleted}


def _int(request: dict, key: str, default: int, low: int, high: int) -> int:
    value = request.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise BadRequest(f"{key!r} must be an integer from {low} to {high}")
    return value


def _log_kind(request: dict) -> str:
    kind = request.get("kind")
    if kind not in LOG_KINDS:
        raise BadRequest(f"'kind' must be one of {', '.join(LOG_KINDS)}")
    return kind


def _log_index(request: dict) -> int:
    return _int(request, "index", 0, 0, DEFAULT_KEEP - 1)


def _domain(request: dict) -> str:
    raw = request.get("domain")
    if not isinstance(raw, str):
        raise BadRequest("'domain' must be a string")
    try:
        return canonical_host(raw)
    except InvalidHost as exc:
        raise BadRequest(str(exc)) from None


def _lines(request: dict) -> int:
    lines = request.get("lines", 50)
    if not isinstance(lines, int) or isinstance(lines, bool) or not 1 <= lines <= MAX_TAIL_LINES:
        raise BadRequest(f"'lines' must be an integer from 1 to {MAX_TAIL_LINES}")
    return lines
