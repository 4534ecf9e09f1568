"""The HTTP side of a node and its main loop.

Requests are served by the proxy's forwarding engine (``proxy.engine``); the node only provides
its resolver: the canonical key of the Host (``routing.canonical_host``) -> the app (the panel
for ``PANEL_HOST``, else whatever the lookup finds, cached briefly) -> the unix socket of that
app's worker process, started on first request. The node answers invalid hosts (400), unknown
domains (404), disabled apps (503), password-protected apps without the right credentials (401,
``webapps.node.basic_auth``) and apps that cannot start (502) itself, starting nothing for any
but the last.

No Django: ``NodeServer`` gets every setting as plain data (``NodeConfig``) and the app lookup
as a plain callable (``webapps.node.directory.Lookup``). ``manage.py runnode`` is the Django
shell that reads the settings and passes a lookup reading the ``WebApp`` table.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import signal
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from proxy.engine import Answer, Client, Engine, EngineConfig, Route, Upstream
from routing import InvalidHost, RouteTable, canonical_host
from routing.addresses import DEFAULT_TRUSTED_PROXIES
from routing.publish import DEFAULT_PREFIX
from webapps.node import basic_auth, pages, sandbox, static
from webapps.node.control import ControlServer
from webapps.node.directory import AppDirectory, Lookup
from webapps.node.launching import Isolated
from webapps.node.node import Node, panel_spec
from webapps.node.spec import AppSpec
from webapps.node.supervisor import AppUnavailable, Supervisor

log = logging.getLogger(__name__)

_HTML = b"text/html; charset=utf-8"
_MAX_ROUTES = 10_000  # a bound on the routes kept (``NodeResolver._forward``)


class NodeResolver:
    """Chooses, for each request, the unix socket of its app's worker process."""

    def __init__(self, node: Node, *, expose_name: bool) -> None:
        self.node = node
        self.guard = basic_auth.Guard()
        self.static = static.StaticFiles(
            node.supervisor.home_root, cache_seconds=node.directory.cache_seconds
        )
        self.headers: tuple[tuple[bytes, bytes], ...] = (
            ((b"X-Backend", node.name.encode()),) if expose_name else ()
        )
        self.inflight: Counter[str] = Counter()
        self._routes: dict[str, Route] = {}  # app -> the Route to its socket (``_forward``)
        self._drained: dict[str, asyncio.Event] = {}
        # The supervisor stops an app to make room only when nothing is in flight for it.
        node.supervisor.busy = lambda name: self.inflight.get(name, 0) > 0

    def __call__(self, head, client: Client) -> Route | Coroutine[Any, Any, Route]:
        """A ``Route`` at once when nothing must wait (the common case), else a coroutine.

        The engine accepts either; answering synchronously saves a task per request.
        """
        try:
            key = canonical_host(head.host.decode("latin-1"))
        except InvalidHost as exc:
            return self._answer(400, pages.bad_host(str(exc)))
        known, spec = self.node.directory.cached(key)
        if known:
            if spec is None:
                return self._answer(404, pages.unknown_domain(key))
            refusal = self._refusal(key, spec, head)
            if refusal is not None:
                return refusal
            if not spec.auth_verifier or self.guard.cached(
                spec.auth_username, spec.auth_verifier, _authorization(head)
            ):
                if spec.static and (files := self._static(spec, head)) is not None:
                    return files
                sock = self.node.supervisor.ready_socket(spec)
                if sock is not None:
                    return self._forward(key, sock, spec)
        return self._resolve(key, head)

    def _refusal(self, key: str, spec: AppSpec, head) -> Route | None:
        """The node's own answer for a disabled app or known-wrong credentials, else None."""
        if not spec.enabled:
            return self._answer(503, pages.disabled(key))
        if spec.auth_verifier:
            known = self.guard.cached(spec.auth_username, spec.auth_verifier, _authorization(head))
            if known is False:
                return self._unauthorized(key)
        return None

    def _unauthorized(self, key: str) -> Route:
        return Route(
            answer=Answer(
                401,
                pages.password_required(key),
                content_type=_HTML,
                headers=(basic_auth.challenge(key),),
            ),
            response_headers=self.headers,
            label=self.node.name,
        )

    async def _resolve(self, key: str, head) -> Route:
        spec = await self.node.directory.get(key)
        if spec is None:
            return self._answer(404, pages.unknown_domain(key))
        refusal = self._refusal(key, spec, head)
        if refusal is not None:
            return refusal
        if spec.auth_verifier and not await self.guard.check(
            spec.auth_username, spec.auth_verifier, _authorization(head)
        ):
            return self._unauthorized(key)
        if spec.static and (files := self._static(spec, head)) is not None:
            return files
        try:
            sock = await self.node.supervisor.socket_for(spec)
        except AppUnavailable as exc:
            return self._answer(exc.status, pages.app_unavailable(exc.name, exc.reason))
        return self._forward(key, sock, spec)

    def _forward(self, key: str, sock: str, spec: AppSpec) -> Route:
        self.inflight[key] += 1
        # One Route per app, made again only when its socket or timeout changes: a Route is a
        # frozen value, so requests in flight may share it (and the hot path makes no objects).
        # The app's worker timeout is also how long its first response byte may take: a request
        # its worker is killed for gets the node's 504, not a closed connection.
        timeout = self.node.supervisor.timeout_of(spec)
        route = self._routes.get(key)
        if route is None or route.upstreams[0].unix != sock or route.first_byte_timeout != timeout:
            if len(self._routes) >= _MAX_ROUTES:
                self._routes.clear()
            route = self._routes[key] = Route(
                upstreams=(Upstream(name=key, unix=sock),),
                response_headers=self.headers,
                on_done=functools.partial(self._done, key),
                label=self.node.name,  # one metrics label per node, not one per domain
                first_byte_timeout=float(timeout),
            )
        return route

    def _static(self, spec, head) -> Route | None:
        """The node's own answer under one of the app's static mappings (never the app's)."""
        answer = static.answer_for(self.static, spec, head.method, head.target, head.headers)
        if answer is None:
            return None
        return Route(answer=answer, response_headers=self.headers, label=self.node.name)

    def _answer(self, status: int, body: bytes) -> Route:
        return Route(
            answer=Answer(status, body, content_type=_HTML),
            response_headers=self.headers,
            label=self.node.name,
        )

    def _done(self, key: str, status: int = 0) -> None:
        self.inflight[key] -= 1
        if self.inflight[key] <= 0:
            del self.inflight[key]
            self.node.supervisor.request_done(key)
            event = self._drained.pop(key, None)
            if event is not None:
                event.set()

    async def drained(self, key: str, timeout: float) -> bool:
        """Wait until no request for ``key`` is in flight through this node."""
        if not self.inflight.get(key):
            return True
        event = self._drained.setdefault(key, asyncio.Event())
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            return False
        return True


def _authorization(head) -> bytes | None:
    for name, value in head.headers:
        if name.lower() == b"authorization":
            return value
    return None


@dataclass
class NodeConfig:
    name: str
    host: str
    port: int
    run_dir: Path
    log_dir: Path
    home_root: Path
    panel_host: str
    base_dir: Path
    idle_timeout: float | None = 900.0
    start_timeout: float = 30.0
    reload_timeout: float = 30.0
    stop_timeout: float = 15.0
    request_timeout: int = 60
    # User apps with a process at once (the least recently used idle one is stopped for a new
    # one); None: no cap.
    max_running: int | None = 50
    cache_seconds: float = 2.0
    expose_name: bool = True
    trusted_proxies: tuple[str, ...] = DEFAULT_TRUSTED_PROXIES
    redis_url: str = ""
    redis_prefix: str = DEFAULT_PREFIX
    # The public keys route tables must be signed with (one, or two while rotating); required
    # with redis_url: a node never follows an unsigned table.
    trusted_keys: tuple = ()
    drain_timeout: float = 30.0
    # None: apps share the node's user (the node was told so); else how it isolates them
    isolated: Isolated | None = None
    in_force: tuple[str, ...] = ()  # what the start-up line says about isolation and cgroups
    egress_deny: tuple[str, ...] = ()  # networks sandboxes may not reach (the control plane's)
    max_workers: int = 8
    max_threads: int = 8
    max_timeout: int = 300
    # The Pythons apps may ask for: version -> interpreter (None: the node's own only)
    pythons: dict[str, str] | None = None
    # The platform's package sets, shared by the nodes of a host (None: none)
    platform_packages: Path | None = None

    @property
    def control_socket(self) -> Path:
        return self.run_dir / "control.sock"


class NodeServer:
    """Everything one node runs, started and stopped together."""

    def __init__(self, config: NodeConfig, *, lookup: Lookup) -> None:
        self.config = config
        self.supervisor = Supervisor(
            run_dir=config.run_dir,
            log_dir=config.log_dir,
            home_root=config.home_root,
            idle_timeout=config.idle_timeout,
            start_timeout=config.start_timeout,
            reload_timeout=config.reload_timeout,
            stop_timeout=config.stop_timeout,
            request_timeout=config.request_timeout,
            max_running=config.max_running,
            isolated=config.isolated,
            max_workers=config.max_workers,
            max_threads=config.max_threads,
            max_timeout=config.max_timeout,
            pythons=config.pythons,
            platform_packages=config.platform_packages,
        )
        panel = panel_spec(
            node_name=config.name,
            panel_host=config.panel_host,
            control_socket=config.control_socket,
            base_dir=config.base_dir,
        )
        self.directory = AppDirectory(
            system={panel.name: panel}, lookup=lookup, cache_seconds=config.cache_seconds
        )
        self.node = Node(
            name=config.name,
            supervisor=self.supervisor,
            directory=self.directory,
            in_force=config.in_force,
            routes=self.table,
        )
        self.resolver = NodeResolver(self.node, expose_name=config.expose_name)
        self.engine = Engine(
            self.resolver,
            EngineConfig(
                first_byte_timeout=float(config.request_timeout),
                max_attempts=1,  # one app, one socket: there is nowhere else to try
                # below gunicorn's 2 s keep-alive, so a pooled connection is never stale
                pool_idle_timeout=1.5,
                trusted_proxies=config.trusted_proxies,
                via=config.name,
            ),
        )
        isolated = config.isolated
        self.control = ControlServer(
            config.control_socket,
            self.node.dispatch,
            allowed_uids=frozenset({isolated.panel_uid}) if isolated else None,
            group=isolated.panel_gid if isolated else None,
        )
        self.subscriber = None
        self.heartbeat = None
        self.egress_table: str | None = None  # the nftables table this node installed
        self._tasks: list[asyncio.Task] = []
        self._moving: set[str] = set()

    def table(self) -> RouteTable | None:
        """The node's copy of the route table (None before the first one, or with no Redis)."""
        return self.subscriber.table if self.subscriber is not None else None

    async def start(self) -> None:
        isolated = self.config.isolated
        if isolated is not None and isolated.egress:
            # This node's own table: removed when it stops (after its apps), replaced when a
            # killed run left it behind; other nodes on this host keep theirs.
            self.egress_table = sandbox.egress_table(self.config.name)
            if sandbox.enable_egress(
                isolated.egress_pool, self.config.egress_deny, table=self.egress_table
            ):
                log.info(
                    "egress rules left by an earlier run replaced (inet %s)", self.egress_table
                )
        await self.control.start()
        await self.engine.listen(self.config.host, self.config.port)
        self._tasks.append(asyncio.create_task(self.supervisor.reap_idle()))
        if self.config.redis_url:
            from routing.subscriber import RouteSubscriber

            state_file = self.config.run_dir / "routes.json"
            self.subscriber = RouteSubscriber(
                self.config.redis_url,
                prefix=self.config.redis_prefix,
                state_file=state_file,
                on_change=self.on_table,
                trusted_keys=self.config.trusted_keys,
            )
            self.node.route_stats = self.route_stats
            await self.subscriber.start()
            await self._start_heartbeat()
        log.info(
            "node %s listening on %s:%d, control socket %s; %s",
            self.config.name,
            self.config.host,
            self.config.port,
            self.config.control_socket,
            "; ".join(self.config.in_force) or "isolation: off",
        )

    def route_stats(self) -> dict:
        """The route table this node follows, for its status: version, signer, refusals."""
        stats = self.subscriber.stats if self.subscriber is not None else None
        if stats is None:
            return {}
        return {
            "version": stats.version,
            "signer": stats.signer,
            "connected": stats.connected,
            "refused": dict(stats.refused),
        }

    async def _start_heartbeat(self) -> None:
        from proxy.front import fleet_report
        from routing.fleet import MAX_IN_FORCE, MAX_LINE, Heartbeat, RateMeter

        address = f"{self.config.host}:{self.config.port}"
        engine_report = functools.partial(
            fleet_report, self.engine, self.subscriber, address, RateMeter(), down=False
        )

        isolation = {
            "isolation": self.config.isolated is not None,
            "in_force": [line[:MAX_LINE] for line in self.config.in_force[:MAX_IN_FORCE]],
        }

        def report() -> dict:
            # The fleet page's "misrouted reloads" column (decision 0048), and whether this
            # node sandboxes its apps ("isolation: off" on the page when it does not).
            return {
                **engine_report(),
                "misrouted_reloads": self.node.misrouted_reloads,
                **isolation,
            }

        self.heartbeat = Heartbeat(
            self.config.redis_url,
            role="node",
            name=self.config.name,
            report=report,
            prefix=self.config.redis_prefix,
        )
        if self.subscriber.table is not None:
            self.heartbeat.table_taken()
        await self.heartbeat.start()

    def on_table(self, table: RouteTable) -> None:
        """A new route table: stop, after their in-flight requests, apps now served elsewhere."""
        if self.heartbeat is not None:
            self.heartbeat.table_taken(table)
        for name in self.supervisor.running():
            if name in self.directory.system:
                continue  # the panel runs on every node: reload URLs reach any of them
            backend = table.backend_for(name)
            if (
                backend is not None
                and backend.name != self.config.name
                and name not in self._moving
            ):
                self._moving.add(name)
                self._tasks.append(asyncio.create_task(self._move_away(name, backend.name)))

    async def _move_away(self, name: str, to: str) -> None:
        try:
            drained = await self.resolver.drained(name, self.config.drain_timeout)
            log.info("%s now routes to %s: stopping it here (drained=%s)", name, to, drained)
            await self.supervisor.stop(name, f"the route table moved it to {to}")
        finally:
            self._moving.discard(name)

    async def stop(self) -> None:
        await self.engine.shutdown(grace=self.config.stop_timeout)
        if self.heartbeat is not None:
            await self.heartbeat.stop()
        if self.subscriber is not None:
            await self.subscriber.stop()
        for task in self._tasks:
            task.cancel()
        await self.supervisor.stop_all()
        # Only once every app has stopped (their interfaces went with them): a sandbox still
        # running would be left without its rules. Should stop_all fail, the rules stay, and
        # the next start replaces them.
        if self.egress_table is not None:
            try:
                sandbox.disable_egress(table=self.egress_table)
            except sandbox.SandboxError as exc:
                log.warning("egress rules (inet %s) not removed: %s", self.egress_table, exc)
            else:
                self.egress_table = None
        await self.control.close()
        self.directory.close()
        self.resolver.guard.close()
        self.resolver.static.close()

    async def run_until_signalled(self) -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await self.start()
        # Everything made so far (modules, Django's settings and models under runnode, the
        # listeners) lives as long as the node: kept out of the cyclic collector's scans, which
        # otherwise pause the loop now and then, as in the front proxy (proxy/server.py).
        gc.collect()
        gc.freeze()
        try:
            await stop.wait()
            log.info("node %s stopping", self.config.name)
        finally:
            await self.stop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(ValueError):
                    loop.remove_signal_handler(sig)
