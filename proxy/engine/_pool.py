"""The upstream side shared by all exchanges: per-upstream pools of idle keep-alive
connections, passive health, and the engine's counters.

A pool hands its most recently used open connection to an exchange, takes it back when the
exchange ends and the upstream keeps it open (rule K of ``proxy.core``), and closes the ones
idle for longer than ``pool_idle_timeout``. A connection knows only its own wire
(``proxy.engine._upstream``); which exchange it carries is the exchange's business.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import contextlib
import logging
import socket
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from proxy.engine._config import Upstream
from proxy.engine._upstream import UpstreamConnection

if TYPE_CHECKING:
    from proxy.engine._engine import Engine

log = logging.getLogger("proxy.engine")

__all__ = ["Health", "Pool", "Stats"]


class Health:
    """Passive health: consecutive connect failures mark an upstream down for a while."""

    def __init__(
        self, threshold: int, down_seconds: float, clock: Callable[[], float] | None = None
    ) -> None:
        self.threshold = threshold
        self.down_seconds = down_seconds
        self.clock = clock or (lambda: asyncio.get_running_loop().time())
        self.failures: dict[str, int] = {}
        self.down_until: dict[str, float] = {}

    def failed(self, name: str) -> None:
        if self.is_down(name):
            return  # requests that chose it before it was marked; it stays down as marked
        count = self.failures.get(name, 0) + 1
        if count >= self.threshold:
            self.down_until[name] = self.clock() + self.down_seconds
            count = 0
            log.warning("upstream %s marked down for %.0fs", name, self.down_seconds)
        self.failures[name] = count

    def succeeded(self, name: str) -> None:
        if self.failures:
            self.failures.pop(name, None)
        if self.down_until:
            self.down_until.pop(name, None)

    def is_down(self, name: str) -> bool:
        until = self.down_until.get(name)
        if until is None:
            return False
        if self.clock() >= until:
            del self.down_until[name]
            return False
        return True

    def order(self, upstreams: Iterable[Upstream]) -> tuple[Upstream, ...]:
        """Healthy upstreams first, in the given order; the ones marked down after them."""
        ups = tuple(upstreams)
        if not self.down_until:
            return ups
        down = [u for u in ups if self.is_down(u.name)]
        if not down:
            return ups
        return tuple(u for u in ups if u not in down) + tuple(down)


class Stats:
    """Counters the engine keeps; the front proxy renders them as Prometheus text."""

    BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

    def __init__(self) -> None:
        # A plain dict (a Counter's += costs twice as much, once per request).
        self.requests: dict[tuple[str, int], int] = {}
        self.latency = [0] * (len(self.BUCKETS) + 1)
        self.latency_sum = 0.0
        self.rejected: collections.Counter[int] = collections.Counter()
        self.connections = 0
        self.retries = 0
        # Requests sent to a backend other than their route's first choice, by reason: "down"
        # (the resolver skipped it, passive health holds it down) or the first attempt's
        # failure ("connect", "timeout", ...) that sent the request to the next candidate.
        self.fallbacks: collections.Counter[str] = collections.Counter()

    def record(self, label: str, status: int, seconds: float) -> None:
        key = (label, status)
        self.requests[key] = self.requests.get(key, 0) + 1
        self.latency_sum += seconds
        self.latency[bisect.bisect_left(self.BUCKETS, seconds)] += 1


class Pool:
    """Idle keep-alive connections to one upstream, most recently used first."""

    def __init__(self, engine: Engine, upstream: Upstream) -> None:
        self.engine = engine
        self.upstream = upstream
        self.idle: list[UpstreamConnection] = []
        self.active = 0
        self.max_idle = engine.config.pool_max_idle
        self.idle_timeout = engine.config.pool_idle_timeout
        self._sweeper: asyncio.TimerHandle | None = None

    def take(self) -> UpstreamConnection | None:
        """The most recently used idle connection that is still open, or None."""
        idle = self.idle
        while idle:
            conn = idle.pop()
            transport = conn.transport
            if not conn.closed and transport is not None and not transport.is_closing():
                return conn
        return None

    def put(self, conn: UpstreamConnection, now: float | None = None) -> None:
        if len(self.idle) >= self.max_idle or self.engine.closing:
            conn.close()
            return
        if now is None:
            now = conn.loop.time()
        conn.idle_since = now
        self.idle.append(conn)
        if self._sweeper is None:
            self._sweeper = conn.loop.call_at(now + self.idle_timeout, self._sweep)

    def discard(self, conn: UpstreamConnection) -> None:
        if conn in self.idle:
            self.idle.remove(conn)

    def _sweep(self) -> None:
        self._sweeper = None
        if not self.idle:
            return
        loop = self.idle[0].loop
        cutoff = loop.time() - self.engine.config.pool_idle_timeout
        keep = []
        for conn in self.idle:
            if conn.idle_since <= cutoff:
                conn.close()
            else:
                keep.append(conn)
        self.idle = keep
        if keep:
            self._sweeper = loop.call_later(self.engine.config.pool_idle_timeout / 2, self._sweep)

    def close(self) -> None:
        for conn in self.idle:
            conn.close()
        self.idle = []
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None

    async def connect(self) -> UpstreamConnection:
        loop = asyncio.get_running_loop()
        up = self.upstream
        factory = lambda: UpstreamConnection(self, loop)  # noqa: E731
        if up.unix is not None:
            coro = loop.create_unix_connection(factory, up.unix)
        else:
            coro = loop.create_connection(factory, up.host, up.port)
        # asyncio.timeout, not wait_for: wait_for runs the connect in a task of its own, one
        # more task for every connection (one per request to a sync worker).
        async with asyncio.timeout(self.engine.config.connect_timeout):
            transport, conn = await coro
        if up.unix is None:
            _abort_unacknowledged(transport, self.engine.config.connect_timeout)
        return conn


def _abort_unacknowledged(transport: asyncio.BaseTransport, seconds: float) -> None:
    """A backend that leaves our bytes unacknowledged for ``seconds`` (the connect timeout) is
    gone (its host lost, its link cut): the kernel drops the connection (TCP_USER_TIMEOUT),
    so a request sent on a kept-alive connection to it fails at once and an idempotent one goes
    to the next candidate, instead of waiting out the first-byte timeout. A slow app is not
    affected: its host's kernel acknowledges the bytes whatever the app does."""
    option = getattr(socket, "TCP_USER_TIMEOUT", None)
    sock = transport.get_extra_info("socket")
    if option is None or sock is None:
        return
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.IPPROTO_TCP, option, max(1, int(seconds * 1000)))
