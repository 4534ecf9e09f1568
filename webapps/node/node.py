"""A backend node: the supervisor, the app directory and the control socket, wired together.

``Node.dispatch`` answers control requests (see ``webapps.node.control``). The HTTP side and the
route-table subscription are added by ``webapps.node.server``.

Every reload is checked against the node's own copy of the route table: when the table sends
the app's traffic to another node that this node can reach, the reload was routed unlike the
traffic (a proxy of another version, a bug). It is counted, flagged in the answer and still
carried out: refusing it would turn a routing disagreement into a reload that never happens.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import SimpleNamespace

from routing import InvalidHost, RouteTable, canonical_host
from routing.addresses import InvalidAddress, parse_address
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
from webapps.node.outcome import Result, misrouted_warning, summary_of
from webapps.node.spec import AppSpec
from webapps.node.supervisor import ReloadOutcome, Supervisor, process_rss

log = logging.getLogger(__name__)

# The panel's reloader when it runs on a node (a dotted path the panel imports, never the node).
PANEL_RELOADER = "webapps.reload.NodeReloader"
# How far down an app's ranking a reload is checked, and how long a peer may take to accept a
# connection before it counts as down (the proxy would have fallen back past it too).
CHECK_RANKS = 4
PEER_CONNECT_TIMEOUT = 1.0

Reachable = Callable[[str], Awaitable[bool]]


async def tcp_reachable(address: str) -> bool:
    """True when ``host:port`` accepts a TCP connection within ``PEER_CONNECT_TIMEOUT``."""
    try:
        parsed = parse_address(address)
    except InvalidAddress:
        return False
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(parsed.bind_host, parsed.port), PEER_CONNECT_TIMEOUT
        )
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


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
        routes: Callable[[], RouteTable | None] = lambda: None,
        reachable: Reachable = tcp_reachable,
    ) -> None:
        self.name = name
        self.supervisor = supervisor
        self.directory = directory
        self.in_force = in_force  # the start-up lines: isolation, cgroups
        self.routes = routes  # the node's copy of the route table (None: it follows none)
        self.reachable = reachable
        self.reloads: Counter[str] = Counter()  # by result
        self.misrouted_reloads = 0
        # Set by the server when it follows the route table: version, signer, refusals.
        self.route_stats: Callable[[], dict] | None = None

    @property
    def isolation(self) -> str:
        return "on" if self.supervisor.isolated is not None else "off"

    async def dispatch(self, request: dict) -> dict:
        op = request.get("op")
        if op == "status":
            answer = {
                "status": "OK",
                "backend": self.name,
                "isolation": self.isolation,
                "in_force": list(self.in_force),
                "apps": self.supervisor.status(),
                "capacity": self.supervisor.capacity(),
                "rss_bytes": process_rss(os.getpid()),
                "reloads": self.reload_counts(),
            }
            if self.route_stats is not None:
                answer["routes"] = self.route_stats()
            return answer
        if op == "metrics":
            return {"status": "OK", "backend": self.name, "metrics": self.metrics()}
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
            f"unknown op {op!r}; one of reload, logs, log_files, log_read, log_delete, status, "
            "metrics, home_file"
        )

    def _home_file(self, request: dict) -> dict:
        """Create a file (``link_to``: a symbolic link; ``directory``: a directory) in a user's
        home as its owner,
        never through a symlink (the panel's starter apps when the panel itself may not write
        into homes)."""
        owner, path, content = request.get("owner"), request.get("path"), request.get("content")
        link_to = request.get("link_to")  # a symbolic link instead of a file
        uid, gid = request.get("uid", 0), request.get("gid", 0)
        if not isinstance(owner, str) or not owner:
            raise BadRequest("'owner' must be a username")
        if not isinstance(path, list) or not all(isinstance(p, str) for p in path):
            raise BadRequest("'path' must be a list of names")
        directory = request.get("directory", False) is True  # a directory instead of a file
        if link_to is None and not directory and not isinstance(content, str):
            raise BadRequest("'content' must be a string")
        if link_to is not None and not isinstance(link_to, str):
            raise BadRequest("'link_to' must be a string")
        for value in (uid, gid):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise BadRequest("'uid' and 'gid' must be non-negative integers")
        try:
            if directory:
                written = homefs.make_directory(
                    self.supervisor.home_root, owner, path, uid=uid, gid=gid
                )
            elif link_to is not None:
                written = homefs.make_symlink(
                    self.supervisor.home_root, owner, path, link_to, uid=uid, gid=gid
                )
            else:
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
        traffic = await self.traffic_backend(domain)
        if spec is None or not spec.enabled:
            outcome = ReloadOutcome(
                Result.FAILED, f"no enabled app {domain} is known to node {self.name}", None
            )
        else:
            outcome = await self.supervisor.reload(spec)
        misrouted = traffic is not None and traffic != self.name
        self.reloads[outcome.result] += 1
        if misrouted:
            self.misrouted_reloads += 1
            log.warning(
                "reload of %s reached %s, but the route table sends its traffic to %s",
                domain,
                self.name,
                traffic,
            )
        log.info("reload %s on %s: %s %s", domain, self.name, outcome.result, outcome.message)
        answer = {
            "status": "OK" if outcome.ok else "ERROR",
            "result": str(outcome.result),
            "backend": self.name,
            "duration_ms": outcome.duration_ms,
            "workers": outcome.workers,
            "generation": outcome.generation,
            "message": outcome.message,
            "log_tail": outcome.log_tail,
            "misrouted": misrouted,
            "traffic_backend": traffic,
            "warning": misrouted_warning(self.name, traffic) if misrouted else "",
        }
        answer["summary"] = summary_of(SimpleNamespace(**answer))
        return answer

    async def traffic_backend(self, domain: str) -> str | None:
        """The node that the route table sends ``domain``'s traffic to, as this node sees it.

        The first of the app's ranking that is this node or accepts connections (a proxy skips
        a backend that is down, so a reload that follows it here is not misrouted). None when
        the node follows no table, the table has no active backend, or none of the first
        ``CHECK_RANKS`` is reachable. Peers are only probed when the first choice is another
        node: the usual reload costs no connection.
        """
        table = self.routes()
        if table is None:
            return None
        for backend in table.ranking(domain, limit=CHECK_RANKS):
            if backend.name == self.name or await self.reachable(backend.address):
                return backend.name
        return None

    def reload_counts(self) -> dict[str, int]:
        counts = {str(result): self.reloads[result] for result in Result}
        counts["misrouted"] = self.misrouted_reloads
        return counts

    def metrics(self) -> str:
        """The node's reload counters in Prometheus text format (0.0.4)."""
        node = f'node="{self.name}"'
        lines = [
            "# HELP hosting_node_reloads_total Reloads asked of this node, by result.",
            "# TYPE hosting_node_reloads_total counter",
            *(
                f'hosting_node_reloads_total{{{node},result="{result}"}} {self.reloads[result]}'
                for result in Result
            ),
            "# HELP hosting_node_misrouted_reloads_total Reloads for apps whose traffic the "
            "node's route table sends to another node (carried out anyway).",
            "# TYPE hosting_node_misrouted_reloads_total counter",
            f"hosting_node_misrouted_reloads_total{{{node}}} {self.misrouted_reloads}",
        ]
        return "\n".join(lines) + "\n"

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
