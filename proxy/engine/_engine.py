"""The engine: listeners, the connections and pools it owns, coalesced writes, shutdown."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections.abc import Callable

from proxy import core
from proxy.engine._config import EngineConfig, Resolver, Upstream
from proxy.engine._downstream import ClientConnection
from proxy.engine._pool import Health, Pool, Stats
from proxy.engine._upstream import UpstreamConnection

log = logging.getLogger("proxy.engine")

__all__ = ["Engine"]


class Engine:
    def __init__(self, resolver: Resolver, config: EngineConfig | None = None) -> None:
        self.resolver = resolver
        self.config = config or EngineConfig()
        self.health = Health(self.config.fail_threshold, self.config.down_seconds)
        self.stats = Stats()
        self.pools: dict[str, Pool] = {}
        self.connections: set[ClientConnection] = set()
        self.servers: list[asyncio.base_events.Server] = []
        self.closing = False
        # Rule T: the length of each timer, indexed by proxy.core.Timer.
        self.seconds = core.timer_seconds(
            header_timeout=self.config.header_timeout,
            idle_timeout=self.config.idle_timeout,
            first_byte_timeout=self.config.first_byte_timeout,
        )
        self._trusted = tuple(
            ipaddress.ip_network(c, strict=False) for c in self.config.trusted_proxies
        )
        self._trusted_cache: dict[str, bool] = {}
        self.via = self.config.via.encode()
        self._idle_event: asyncio.Event | None = None
        self._writes: list[tuple[ClientConnection | UpstreamConnection, bytes]] = []

    # --- coalesced writes (see the package docstring) --------------------------------------
    def write_later(self, conn: ClientConnection | UpstreamConnection, data: bytes) -> None:
        """Write ``data`` to ``conn`` at the end of this loop iteration, in order with the
        connection's other writes (each of those calls ``flush_writes`` first)."""
        writes = self._writes
        if not writes:
            conn.loop.call_soon(self.flush_writes)
        writes.append((conn, data))
        conn.deferred = True

    def flush_writes(self) -> None:
        writes = self._writes
        if not writes:
            return
        self._writes = []
        for conn, data in writes:
            conn.deferred = False
            transport = conn.transport
            if transport is not None and not transport.is_closing():
                try:
                    transport.write(data)
                except Exception:  # one connection's failure must not cost the others theirs
                    log.exception("a coalesced write failed; closing that connection")
                    transport.abort()

    # --- listeners -------------------------------------------------------------------------
    def protocol_factory(self, scheme: str = "http") -> Callable[[], ClientConnection]:
        return lambda: ClientConnection(self, scheme)

    async def listen(
        self,
        host: str,
        port: int,
        *,
        ssl=None,
        reuse_port: bool = False,
        sock: socket.socket | None = None,
        backlog: int = 1024,
    ) -> asyncio.base_events.Server:
        loop = asyncio.get_running_loop()
        scheme = "https" if ssl is not None else "http"
        if sock is not None:
            server = await loop.create_server(
                self.protocol_factory(scheme), sock=sock, ssl=ssl, backlog=backlog
            )
        else:
            server = await loop.create_server(
                self.protocol_factory(scheme),
                host,
                port,
                ssl=ssl,
                reuse_port=reuse_port or None,
                backlog=backlog,
            )
        self.servers.append(server)
        return server

    async def listen_unix(self, path: str) -> asyncio.base_events.Server:
        loop = asyncio.get_running_loop()
        server = await loop.create_unix_server(self.protocol_factory("http"), path)
        self.servers.append(server)
        return server

    async def shutdown(self, grace: float = 10.0) -> None:
        """Stop accepting, let in-flight requests finish up to ``grace`` seconds, then close."""
        self.closing = True
        for server in self.servers:
            server.close()
        for conn in list(self.connections):
            conn.shutdown()
        if self.connections:
            self._idle_event = asyncio.Event()
            try:
                await asyncio.wait_for(self._idle_event.wait(), grace)
            except TimeoutError:
                log.warning("grace period over, closing %d connections", len(self.connections))
        for conn in list(self.connections):
            conn.abort()
        for pool in list(self.pools.values()):
            pool.close()
        for server in self.servers:
            await server.wait_closed()

    def _forget(self, conn: ClientConnection) -> None:
        self.connections.discard(conn)
        if self._idle_event is not None and not self.connections:
            self._idle_event.set()

    # --- helpers used by the protocols ------------------------------------------------------
    def trusted(self, ip: str) -> bool:
        if not self._trusted:
            return False
        known = self._trusted_cache.get(ip)
        if known is None:
            try:
                addr = ipaddress.ip_address(ip)
                known = any(addr in net for net in self._trusted)
            except ValueError:
                known = False
            if len(self._trusted_cache) > 10_000:
                self._trusted_cache.clear()
            self._trusted_cache[ip] = known
        return known

    def pool(self, upstream: Upstream) -> Pool:
        pool = self.pools.get(upstream.key)
        if pool is None:
            pool = self.pools[upstream.key] = Pool(self, upstream)
        return pool
