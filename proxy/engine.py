"""The asyncio shell of the forwarding engine: protocols that feed httptools and react to its
events, per-upstream keep-alive pools, timers, flow control.

One ``Engine`` serves any number of listeners. For each request it asks a *resolver* where
to send it; the resolver may be sync or async and returns a ``Route``: ordered upstream
candidates (TCP or unix socket), or a direct ``Answer``, plus response headers to add.

Life of a request: ``ClientConnection`` feeds bytes to httptools; at the end of the head the
pure core validates it (``core.validate_request``) and an ``Exchange`` is queued. The exchange
resolves a route, takes a pooled ``UpstreamConnection`` (or connects), writes the rebuilt head
and the body, and relays the response. Completion happens after a parser call returns, so a
response head and the first body bytes leave in one write.

Timers are lazy: each connection keeps one timer handle and a deadline; moving a deadline later
costs a float store, the handle re-arms itself when it fires early.

Writes that end a message (a whole response passed through to the client, a whole bodyless
request head to an upstream) are coalesced to the end of the event-loop iteration
(``Engine.write_later``): the peers then wake once for a batch of messages instead of once per
message, which on loopback saves more CPU than the Python work the batch costs. Any other write,
EOF or close on that connection first flushes the batch, so bytes never change order.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import contextlib
import inspect
import ipaddress
import logging
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

import httptools

from proxy import core
from proxy.core import CHUNKED, CLOSE, LENGTH, HttpError, Limits, RequestHead

log = logging.getLogger("proxy.engine")

__all__ = [
    "Answer",
    "Client",
    "Engine",
    "EngineConfig",
    "Health",
    "Route",
    "Upstream",
]

HIGH_WATER = 64 * 1024  # bytes buffered for one direction before the reader is paused
MAX_RESPONSE_HEAD = 64 * 1024
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


@dataclass(frozen=True, slots=True)
class Upstream:
    """Where to send a request: ``host``/``port``, or ``unix`` (a socket path)."""

    name: str
    host: str = ""
    port: int = 0
    unix: str | None = None
    # The pool key, computed once (it is looked up for every request).
    key: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        key = f"unix:{self.unix}" if self.unix else f"{self.host}:{self.port}"
        object.__setattr__(self, "key", key)

    @classmethod
    def parse(cls, address: str, name: str | None = None) -> Upstream:
        """``host:port``, ``[v6]:port``, ``unix:/path`` or ``/path``."""
        if address.startswith("unix:"):
            return cls(name or address, unix=address[5:])
        if address.startswith("/"):
            return cls(name or address, unix=address)
        host, sep, port = address.rpartition(":")
        if not sep or not port.isdigit() or not host:
            raise ValueError(f"upstream address {address!r} is not host:port or unix:/path")
        return cls(name or address, host=host.strip("[]"), port=int(port))


@dataclass(frozen=True, slots=True)
class Answer:
    """A response the resolver gives itself (404 page, 503 with Retry-After, ...)."""

    status: int
    body: bytes = b""
    content_type: bytes = b"text/plain; charset=utf-8"
    headers: tuple[tuple[bytes, bytes], ...] = ()


@dataclass(frozen=True, slots=True)
class Route:
    upstreams: tuple[Upstream, ...] = ()
    answer: Answer | None = None
    # Added to every response of this request, the proxy's own pages included.
    response_headers: tuple[tuple[bytes, bytes], ...] = ()
    # Called once with the final status when the exchange ends (0: the client went away).
    on_done: Callable[[int], None] | None = None
    # The metrics label; defaults to the upstream's name.
    label: str = ""


@dataclass(frozen=True, slots=True)
class Client:
    """Who sent the request, as the resolver sees it."""

    ip: str
    port: int
    scheme: str  # "http" or "https"


Resolver = Callable[[RequestHead, Client], "Route | Awaitable[Route]"]


@dataclass(frozen=True, slots=True)
class EngineConfig:
    limits: Limits = field(default_factory=Limits)
    header_timeout: float = 10.0  # first byte of a request -> end of its head, else 408
    idle_timeout: float = 60.0  # keep-alive wait between requests, and body idleness
    connect_timeout: float = 5.0  # upstream connect, else try the next candidate, then 504
    first_byte_timeout: float = 60.0  # request sent -> first response byte, else 504
    pool_idle_timeout: float = 30.0  # idle upstream connections are closed after this
    pool_max_idle: int = 256  # idle connections kept per upstream
    max_attempts: int = 3  # upstream candidates tried for one request
    trusted_proxies: tuple[str, ...] = ()  # CIDRs whose X-Forwarded-* are kept
    via: str = "proxy"
    fail_threshold: int = 3  # consecutive connect failures that mark an upstream down
    down_seconds: float = 10.0
    retry_after: int = 5  # Retry-After on our 503 pages


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

    def record(self, label: str, status: int, seconds: float) -> None:
        key = (label, status)
        self.requests[key] = self.requests.get(key, 0) + 1
        self.latency_sum += seconds
        self.latency[bisect.bisect_left(self.BUCKETS, seconds)] += 1


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
        self._trusted = tuple(
            ipaddress.ip_network(c, strict=False) for c in self.config.trusted_proxies
        )
        self._trusted_cache: dict[str, bool] = {}
        self.via = self.config.via.encode()
        self._idle_event: asyncio.Event | None = None
        self._writes: list[tuple[ClientConnection | UpstreamConnection, bytes]] = []

    # --- coalesced writes (see the module docstring) -------------------------------------------
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
        transport, conn = await asyncio.wait_for(coro, self.engine.config.connect_timeout)
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


class _Timer:
    """One lazy deadline per connection (see the module docstring)."""

    __slots__ = ("callback", "deadline", "handle", "kind", "loop", "when")

    def __init__(self, loop: asyncio.AbstractEventLoop, callback: Callable[[int], None]) -> None:
        self.loop = loop
        self.callback = callback
        self.handle: asyncio.TimerHandle | None = None
        self.when = 0.0  # when the handle fires
        self.deadline = 0.0
        self.kind = 0  # 0: disarmed

    def arm(self, kind: int, seconds: float) -> None:
        self.arm_at(kind, self.loop.time() + seconds)

    def arm_at(self, kind: int, deadline: float) -> None:
        """``arm`` for a caller that already read the clock."""
        self.kind = kind
        self.deadline = deadline
        handle = self.handle
        if handle is None:
            self.handle = self.loop.call_at(deadline, self._fire)
            self.when = deadline
        elif self.when > deadline:
            handle.cancel()
            self.handle = self.loop.call_at(deadline, self._fire)
            self.when = deadline

    def disarm(self) -> None:
        self.kind = 0

    def cancel(self) -> None:
        self.kind = 0
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None

    def _fire(self) -> None:
        self.handle = None
        if not self.kind:
            return
        if self.loop.time() < self.deadline:
            self.handle = self.loop.call_at(self.deadline, self._fire)
            self.when = self.deadline
            return
        kind, self.kind = self.kind, 0
        self.callback(kind)


# client connection timer kinds
_T_HEADER, _T_IDLE, _T_BODY, _T_LINGER = 1, 2, 3, 4
# client connection states
_IDLE, _HEAD, _BUSY, _TUNNEL, _LINGER, _CLOSED = range(6)


class ClientConnection(asyncio.Protocol):
    """One client connection: feeds httptools, validates heads, runs exchanges in order."""

    # No instance dict: less memory per connection (10,000 idle ones stay under 100 MB)
    # and faster attribute access.
    __slots__ = (
        "active",
        "client",
        "client_ip",
        "closing",
        "config",
        "deferred",
        "engine",
        "error",
        "feeding",
        "head_bytes",
        "head_started",
        "headers",
        "in_head",
        "limits",
        "loop",
        "max_head",
        "parser",
        "parsing",
        "queue",
        "read_paused",
        "scheme",
        "scheme_b",
        "state",
        "timer",
        "transport",
        "trusted",
        "upgrade_pending",
        "upgrade_tail",
        "url",
        "write_paused",
    )

    def __init__(self, engine: Engine, scheme: str) -> None:
        self.engine = engine
        self.config = engine.config
        self.limits = engine.config.limits
        self.max_head = self.limits.max_request_line + self.limits.max_header_bytes + 4
        self.scheme = scheme
        self.scheme_b = scheme.encode()
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.timer = _Timer(self.loop, self._on_timeout)
        self.state = _HEAD  # a new connection owes us a request head within header_timeout
        self.client: Client | None = None
        self.client_ip = b""
        self.trusted = False
        self.deferred = False  # a write of ours waits in Engine.write_later's batch
        self.queue: collections.deque[Exchange] = collections.deque()
        self.active: Exchange | None = None  # the exchange whose response is being relayed
        self.parsing: Exchange | None = None  # the exchange receiving request body events
        self.read_paused = False
        self.write_paused = False
        self.closing = False  # close once the current exchange ends (shutdown, errors)
        self.error: HttpError | None = None
        self.upgrade_tail = b""
        self.feeding = 0  # length of the chunk being fed to the parser
        self.upgrade_pending = False
        self.head_started = False
        self._reset_head()

    def _reset_head(self) -> None:
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_bytes = 0
        self.in_head = True

    # --- asyncio.Protocol -------------------------------------------------------------------
    def connection_made(self, transport) -> None:
        self.transport = transport
        self.engine.connections.add(self)
        self.engine.stats.connections += 1
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple):
            ip, port = peer[0], peer[1]
        else:
            ip, port = "127.0.0.1", 0  # unix socket
        self.client = Client(ip, port, self.scheme)
        self.client_ip = ip.encode()
        self.trusted = self.engine.trusted(ip)
        self.timer.arm(_T_HEADER, self.config.header_timeout)

    def connection_lost(self, exc) -> None:
        self.state = _CLOSED
        self.timer.cancel()
        self.engine._forget(self)
        for exchange in (self.active, *self.queue):
            if exchange is not None:
                exchange.client_gone()
        self.active = None
        self.queue.clear()

    def pause_writing(self) -> None:
        self.write_paused = True
        if self.active is not None:
            self.active.client_write_paused(True)

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.active is not None:
            self.active.client_write_paused(False)

    def data_received(self, data: bytes) -> None:
        state = self.state
        if state == _TUNNEL:
            self.active.tunnel_to_upstream(data)  # type: ignore[union-attr]
            return
        if state in (_LINGER, _CLOSED):
            return
        if self.upgrade_pending:
            # The parser stopped at an upgrade; hold early bytes for the tunnel (bounded).
            self.upgrade_tail += data
            if len(self.upgrade_tail) > HIGH_WATER:
                self._pause_reading()
            return
        if state <= _HEAD and not self.trusted and not self.head_started and self.active is None:
            # Between requests: a whole head of the usual shape skips the parser's callbacks
            # (core.simple_request rebuilds heads for untrusted peers: X-Forwarded-* dropped).
            simple = core.simple_request(
                data, self.limits, self.client_ip, self.scheme_b, self.engine.via
            )
            if simple is not None:
                self.state = _BUSY
                self.timer.kind = 0  # disarm: no body to wait for
                exchange = Exchange(self, simple[0])
                exchange.upstream_head = simple[1]
                self.active = exchange
                exchange.route_request()
                return
        if state == _IDLE:
            self.state = _HEAD
            self.timer.arm(_T_HEADER, self.config.header_timeout)
        was_in_head = self.in_head
        self.feeding = len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            self.upgrade_pending = True
            self.upgrade_tail = data[exc.args[0] :]
        except httptools.HttpParserCallbackError:
            self._refuse(self.error or HttpError(400, "bad request"))
            return
        except httptools.HttpParserInvalidMethodError:
            if self.in_head:
                # A well-formed token that is not a method we know: 501; anything else: 400.
                word = data.lstrip(b"\r\n").split(b" ", 1)[0]
                ok = word.isalpha() and word.isascii() and b" " in data
                self._refuse(HttpError(501 if ok else 400, "method not implemented"))
            else:
                self._refuse(HttpError(400, "malformed request"))
            return
        except httptools.HttpParserError as exc:
            msg = str(exc)
            status = 505 if "HTTP version" in msg else 400
            self._refuse(HttpError(status, msg))
            return
        if was_in_head and self.in_head:
            self.head_bytes += len(data)
        if self.in_head and self.head_bytes > self.max_head:
            # httptools buffers a partial line without bound; one read is the most it holds.
            if self.headers:
                self._refuse(HttpError(431, "header block too large"))
            else:
                self._refuse(HttpError(414, "request line too long"))
            return
        if self.active is None and self.queue:
            self._next()

    # --- httptools callbacks ------------------------------------------------------------------
    def on_message_begin(self) -> None:
        # _reset_head(), inline (once per request)
        self.url = b""
        self.headers = []
        self.head_bytes = 0
        self.in_head = True
        self.head_started = True
        if self.state == _IDLE:
            self.state = _HEAD
            self.timer.arm(_T_HEADER, self.config.header_timeout)

    def on_url(self, url: bytes) -> None:
        self.url += url
        if len(self.url) > self.limits.max_request_line:
            self.error = HttpError(414, "request line too long")
            raise self.error

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self.in_head:
            # A trailer field: counted and dropped (never forwarded).
            self.head_bytes += len(name) + len(value)
            if self.head_bytes > self.limits.max_header_bytes:
                self.error = HttpError(431, "trailer block too large")
                raise self.error
            return
        headers = self.headers
        headers.append((name, value))
        if len(headers) > self.limits.max_header_count:
            self.error = HttpError(431, f"more than {self.limits.max_header_count} header fields")
            raise self.error

    def on_headers_complete(self) -> None:
        # The head came in the bytes fed so far: only when those could exceed the limit is
        # the exact size worth adding up.
        if self.head_bytes + self.feeding > self.limits.max_header_bytes and (
            sum(len(n) + len(v) + 4 for n, v in self.headers) > self.limits.max_header_bytes
        ):
            self.error = HttpError(431, "header block too large")
            raise self.error
        parser = self.parser
        try:
            head = core.validate_request(
                parser.get_method(),
                self.url,
                parser.get_http_version(),
                self.headers,
                parser.should_keep_alive(),
                self.limits,
            )
        except HttpError as exc:
            self.error = exc
            raise
        self.in_head = False
        self.head_started = False
        self.head_bytes = 0
        self.state = _BUSY
        if head.chunked or head.content_length:  # head.has_body
            self.timer.arm(_T_BODY, self.config.idle_timeout)
        else:
            self.timer.kind = 0  # disarm
        exchange = Exchange(self, head)
        self.parsing = exchange
        self.queue.append(exchange)
        if self.active is not None and not self.read_paused:
            # A pipelined request: hold further reads until the current response is done.
            self._pause_reading()

    def on_body(self, body: bytes) -> None:
        exchange = self.parsing
        if exchange is not None:
            if self.timer.kind == _T_BODY:
                self.timer.deadline = self.loop.time() + self.config.idle_timeout
            exchange.client_body(body)

    def on_message_complete(self) -> None:
        exchange = self.parsing
        self.parsing = None
        if self.timer.kind == _T_BODY:
            self.timer.disarm()
        # A request without a body was complete from its head on; it cannot have been
        # started (that happens after the parser call), so there is nothing to tell it.
        if exchange is not None and not exchange.request_done:
            exchange.client_body_end()

    # --- flow ---------------------------------------------------------------------------------
    def _pause_reading(self) -> None:
        if not self.read_paused and self.transport is not None:
            self.read_paused = True
            self.transport.pause_reading()

    def _resume_reading(self) -> None:
        if self.read_paused and self.transport is not None and self.state != _CLOSED:
            self.read_paused = False
            self.transport.resume_reading()

    def _next(self) -> None:
        exchange = self.queue.popleft()
        self.active = exchange
        if exchange.request_done:
            exchange.route_request()  # Exchange.start for a request without a body
        else:
            exchange.start()

    def exchange_done(self, exchange: Exchange, keep_alive: bool) -> None:
        """Called by the active exchange once its response is fully written."""
        if self.active is not exchange:
            return
        self.active = None
        if not exchange.request_done:
            self.linger()  # the client is still sending a body we will not read
            return
        if not keep_alive or self.closing:
            self.close()
            return
        if self.queue:
            self._next()
            return
        if self.head_started:
            self.state = _HEAD
            self.timer.arm(_T_HEADER, self.config.header_timeout)
        elif self.parsing is None:
            self.state = _IDLE
            self.timer.arm(_T_IDLE, self.config.idle_timeout)
        if self.read_paused:
            self._resume_reading()

    def start_tunnel(self) -> None:
        self.state = _TUNNEL
        self.upgrade_pending = False
        self.timer.cancel()
        tail, self.upgrade_tail = self.upgrade_tail, b""
        if tail:
            self.active.tunnel_to_upstream(tail)  # type: ignore[union-attr]
        self._resume_reading()

    def write(self, data: bytes) -> None:
        if self.deferred:
            self.engine.flush_writes()
        if self.transport is not None and self.state != _CLOSED:
            self.transport.write(data)

    def _refuse(self, error: HttpError) -> None:
        """Answer a refused request and close; the exchange (if any) never went upstream."""
        if error.status >= 500 and error.status not in (501, 505):
            log.error("refusing request: %s", error)
        self.engine.stats.rejected[error.status] += 1
        active = self.active
        if active is not None and active.response_started:
            # A response is already on its way; the only honest signal left is to close.
            for pending in (active, *self.queue):
                pending.abort()
            self.queue.clear()
            self.close()
            return
        for pending in (self.active, *self.queue):
            if pending is not None:
                pending.abort()
        self.active = None
        self.queue.clear()
        self.parsing = None
        if self.state == _CLOSED:
            return
        self.write(core.error_page(error.status, error.detail))
        self.linger()

    def linger(self) -> None:
        """Close after a refusal: half-close, drain what the client still sends, then close,
        so the client reads our answer instead of a reset."""
        self.state = _LINGER
        transport = self.transport
        if transport is None:
            return
        if self.deferred:
            self.engine.flush_writes()
        if self.read_paused:
            self.read_paused = False
            transport.resume_reading()
        if transport.can_write_eof():
            transport.write_eof()
            self.timer.arm(_T_LINGER, 2.0)
        else:
            transport.close()

    def shutdown(self) -> None:
        self.closing = True
        idle = self.active is None and not self.queue and not self.head_started
        if idle and self.state in (_IDLE, _HEAD, _LINGER):
            self.close()  # no request under way: nothing to finish

    def close(self) -> None:
        if self.transport is not None and self.state != _CLOSED:
            if self.deferred:
                self.engine.flush_writes()
            self.state = _LINGER
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None and self.state != _CLOSED:
            self.transport.abort()

    def _on_timeout(self, kind: int) -> None:
        if kind == _T_HEADER:
            if self.state == _IDLE and self.head_bytes == 0 and self.engine.closing:
                self.close()
            else:
                self.engine.stats.rejected[408] += 1
                self.write(core.error_page(408, "request head not received in time"))
                self.linger()
        elif kind == _T_BODY:
            if self.active is not None and self.active.response_started:
                self.engine.stats.rejected[408] += 1
                self.active.abort()
                self.abort()
            else:
                self._refuse(HttpError(408, "request body not received in time"))
        else:  # idle keep-alive, or the lingering close is over
            self.close()


# upstream connection timer kinds
_U_FIRST_BYTE, _U_READ = 1, 2


class UpstreamConnection(asyncio.Protocol):
    """One connection to an upstream; carries one exchange at a time, then goes to its pool."""

    # As ClientConnection.
    __slots__ = (
        "closed",
        "deferred",
        "exchange",
        "got_bytes",
        "head_buf",
        "idle_since",
        "in_head",
        "loop",
        "parser",
        "pool",
        "raw_heads",
        "read_paused",
        "timer",
        "transport",
        "tunnel",
        "write_paused",
    )

    def __init__(self, pool: Pool, loop: asyncio.AbstractEventLoop) -> None:
        self.pool = pool
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.exchange: Exchange | None = None
        self.closed = False
        self.idle_since = 0.0
        self.timer = _Timer(loop, self._on_timeout)
        self.write_paused = False
        self.read_paused = False
        self.tunnel = False
        # Response heads are taken raw from the byte stream (httptools validates them, the
        # core rewrites them in one regex pass): no Python call per header field.
        self.head_buf = b""
        self.raw_heads: collections.deque[bytes] = collections.deque()
        self.got_bytes = False  # any byte of the current exchange's response arrived
        self.in_head = True
        self.deferred = False  # a write of ours waits in Engine.write_later's batch

    def pause_reading(self) -> None:
        if not self.read_paused and self.transport is not None and not self.closed:
            self.read_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.read_paused and self.transport is not None and not self.closed:
            self.read_paused = False
            self.transport.resume_reading()

    def write(self, data: bytes) -> None:
        """Write now, after anything of ours still waiting in Engine.write_later's batch."""
        if self.deferred:
            self.pool.engine.flush_writes()
        self.transport.write(data)  # type: ignore[union-attr]

    def release(self, now: float | None = None) -> None:
        """Back to its pool: the exchange it carried is over and the upstream keeps it open."""
        self.exchange = None
        pool = self.pool
        pool.active -= 1
        self.timer.kind = 0
        if self.read_paused:
            self.resume_reading()  # an idle connection must see the upstream's EOF
        pool.put(self, now)

    def detach(self) -> None:
        if self.exchange is not None:
            self.exchange = None
            self.pool.active -= 1

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.timer.cancel()
            self.pool.discard(self)
            if self.transport is not None:
                self.transport.close()

    # --- asyncio.Protocol -------------------------------------------------------------------
    def connection_made(self, transport) -> None:
        self.transport = transport

    def connection_lost(self, exc) -> None:
        was_closed = self.closed
        self.closed = True
        self.timer.cancel()
        self.pool.discard(self)
        exchange = self.exchange
        if exchange is not None:
            self.detach()
            exchange.upstream_lost(self, exc, was_closed)

    def pause_writing(self) -> None:
        self.write_paused = True
        if self.exchange is not None:
            self.exchange.upstream_write_paused(True)

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.exchange is not None:
            self.exchange.upstream_write_paused(False)

    def data_received(self, data: bytes) -> None:
        exchange = self.exchange
        if exchange is None:
            # Bytes nobody asked for: the connection can no longer be trusted.
            self.close()
            return
        if self.tunnel:
            exchange.tunnel_to_client(data)
            return
        self.got_bytes = True
        if self.in_head:
            if not self.head_buf:
                head = exchange.head
                if (
                    exchange.keep_alive
                    and exchange.request_done
                    and head.version == b"1.1"
                    and head.method != b"HEAD"
                    and not head.websocket
                    and not exchange.client.closing
                ):
                    route = exchange.route
                    out = core.pass_through_response(data, route.response_headers)  # type: ignore[union-attr]
                    if out is not None:
                        # The whole response in one read, nothing to rewrite: no parser.
                        self._passed_through(exchange, int(data[9:12]), out)
                        return
            if not self._scan_heads(data):
                exchange.upstream_invalid(self, "response head too large")
                return
        if self.timer.kind:
            # Bytes arrived: from now on the response may idle up to idle_timeout between
            # reads (a response passed through whole above is over, its timer is disarmed).
            self.timer.kind = _U_READ
            self.timer.deadline = self.loop.time() + exchange.config.idle_timeout
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            tail = data[exc.args[0] :]
            exchange.flush()
            if exchange.upgraded:
                self.tunnel = True
                self.timer.cancel()
                exchange._record(101)
                exchange.client.start_tunnel()
                if tail:
                    exchange.tunnel_to_client(tail)
            return
        except httptools.HttpParserError as exc:
            exchange.upstream_invalid(self, str(exc))
            return
        exchange.flush()

    def _passed_through(self, exchange: Exchange, status: int, out: bytes) -> None:
        """A whole response passed through: count it, write it, give this connection back to
        its pool and the client connection back to its keep-alive wait (Exchange.flush,
        complete and ClientConnection.exchange_done, inline: once per request)."""
        self.in_head = False
        exchange.status = status
        exchange.response_started = exchange.finished = True
        exchange.upconn = None
        exchange._record(status)  # before the write, so a client never outruns the count
        now = self.loop.time()
        client = exchange.client
        if client.state != _CLOSED:
            exchange.engine.write_later(client, out)
        self.release(now)
        if (
            client.active is exchange
            and not client.closing
            and not client.queue
            and not client.head_started
            and client.parsing is None
        ):
            # ClientConnection.exchange_done for a keep-alive client with nothing queued.
            client.active = None
            client.state = _IDLE
            client.timer.arm_at(_T_IDLE, now + client.config.idle_timeout)
            if client.read_paused:
                client._resume_reading()
        else:
            client.exchange_done(exchange, True)

    def _scan_heads(self, data: bytes) -> bool:
        """Cut complete response heads (interim ones, then the final one) off the stream;
        the bytes after the final head are body and are not scanned. False: head too large."""
        buf = self.head_buf + data if self.head_buf else data
        pos = 0
        while True:
            end = buf.find(b"\r\n\r\n", pos)
            if end < 0:
                self.head_buf = buf[pos:]
                return len(self.head_buf) <= MAX_RESPONSE_HEAD
            self.raw_heads.append(buf[pos : end + 2])
            status = buf[pos + 9 : pos + 12]
            pos = end + 4
            if not status.startswith(b"1") or status == b"101":
                self.head_buf = b""
                return end - pos <= MAX_RESPONSE_HEAD

    # --- httptools callbacks ------------------------------------------------------------------
    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        exchange = self.exchange
        if not self.raw_heads:
            # llhttp found a head where we did not: treat the response as invalid.
            raise HttpError(502, "unrecognised response head")
        raw = self.raw_heads.popleft()
        if status < 200 and status != 101:
            exchange.interim(status, raw)  # type: ignore[union-attr]
            return
        self.in_head = False
        exchange.response_head(  # type: ignore[union-attr]
            self, status, raw, self.parser.should_keep_alive()
        )

    def on_body(self, body: bytes) -> None:
        exchange = self.exchange
        if exchange.finished:  # type: ignore[union-attr]
            return  # e.g. a body after a HEAD response: dropped, the connection is closed
        if exchange.client_framing == CHUNKED:  # type: ignore[union-attr]
            body = b"%x\r\n%b\r\n" % (len(body), body)
        exchange.out.append(body)  # type: ignore[union-attr]

    def on_message_complete(self) -> None:
        if not self.in_head:
            self.exchange.response_end(self.parser.should_keep_alive())  # type: ignore[union-attr]

    def _on_timeout(self, kind: int) -> None:
        exchange = self.exchange
        if exchange is not None:
            exchange.upstream_timeout(self, kind == _U_FIRST_BYTE)
        else:
            self.close()


class Exchange:
    """One request and its response."""

    # Class-level defaults: an exchange sets only what differs (one per request, so the
    # attribute stores it saves are worth the instance dict).
    route: Route | None = None
    upconn: UpstreamConnection | None = None
    upstream: Upstream | None = None
    upstream_head = b""
    head_sent = False
    body_buffer: list[bytes] | None = None
    buffered = 0
    body_received = 0
    response_started = False
    finished = False
    client_framing = LENGTH
    upstream_keep_alive = False
    upstream_framing_known = True
    status = 0
    attempt = 0
    upgraded = False
    done = False
    waiting_body = False

    def __init__(self, client: ClientConnection, head: RequestHead) -> None:
        self.client = client
        self.engine = client.engine
        self.config = client.config
        self.head = head
        self.request_done = not (head.chunked or head.content_length)
        self.out: list[bytes] = []
        self.keep_alive = head.keep_alive and not head.websocket
        # (after anything but a 101 to a WebSocket request the parser cannot go on)
        self.started_at = client.loop.time()

    # --- routing ------------------------------------------------------------------------------
    def start(self) -> None:
        # A body up to HIGH_WATER is read before anything goes upstream, so a request whose
        # body turns out malformed (a bad chunk) never reaches the backend. Larger bodies
        # stream. Expect: 100-continue cannot wait: the client waits for us.
        if not self.request_done and self.buffered <= HIGH_WATER and not self.head.expect_continue:
            self.waiting_body = True
            return
        self.route_request()

    def route_request(self) -> None:
        self.waiting_body = False
        try:
            route = self.engine.resolver(self.head, self.client.client)  # type: ignore[arg-type]
        except HttpError as exc:
            self.answer_error(exc.status, exc.detail)
            return
        if type(route) is Route:
            if route.answer is None and route.upstreams:
                # The common case, inline: a pooled connection to the first candidate.
                self.route = route
                upstream = self.upstream = route.upstreams[0]
                pool = self.engine.pools.get(upstream.key)
                if pool is not None:
                    conn = pool.take()
                    if conn is not None:
                        self.send_on(conn)
                        return
            self.routed(route)
        elif inspect.isawaitable(route):
            task = asyncio.ensure_future(route)
            task.add_done_callback(self._resolved)
        else:
            self.routed(route)

    def _resolved(self, task: asyncio.Future) -> None:
        if self.finished:
            # The client went away while the resolver worked: the route is not used, but its
            # on_done still runs once, so the resolver's bookkeeping stays balanced.
            if not task.cancelled() and task.exception() is None:
                route = task.result()
                if route.on_done is not None:
                    route.on_done(0)
            return
        if task.cancelled():
            self.answer_error(503, "no route")
            return
        exc = task.exception()
        if isinstance(exc, HttpError):
            self.answer_error(exc.status, exc.detail)
        elif exc is not None:
            log.error("resolver failed", exc_info=exc)
            self.answer_error(502, "the route could not be resolved")
        else:
            self.routed(task.result())

    def routed(self, route: Route) -> None:
        self.route = route
        if route.answer is not None:
            answer = route.answer
            keep = self.keep_alive and self.request_done
            self.send_own(
                answer.status,
                core.render_answer(
                    answer.status,
                    answer.body,
                    content_type=answer.content_type,
                    headers=answer.headers + route.response_headers,
                    keep_alive=keep,
                    head_request=self.head.method == b"HEAD",
                ),
                keep,
            )
            return
        if not route.upstreams:
            self.answer_error(503, "no backend available")
            return
        self.connect()

    def connect(self) -> None:
        route = self.route
        assert route is not None
        ups = route.upstreams
        upstream = ups[self.attempt % len(ups)]
        self.upstream = upstream
        pool = self.engine.pool(upstream)
        conn = pool.take()
        if conn is not None:
            self.send_on(conn)
            return
        task = asyncio.ensure_future(pool.connect())
        task.add_done_callback(self._connected)

    def _connected(self, task: asyncio.Future) -> None:
        upstream = self.upstream
        assert upstream is not None
        exc = None if task.cancelled() else task.exception()
        if task.cancelled() or exc is not None:
            self.engine.health.failed(upstream.name)
            timeout = isinstance(exc, TimeoutError)
            log.warning("connect to %s (%s) failed: %r", upstream.name, upstream.key, exc)
            if not self.finished:
                self.retry_or_fail(504 if timeout else 502, "upstream unreachable", sent=False)
            return
        conn: UpstreamConnection = task.result()
        self.engine.health.succeeded(upstream.name)
        if self.finished:
            conn.pool.put(conn)
            return
        self.send_on(conn)

    def retry_or_fail(self, status: int, detail: str, *, sent: bool) -> None:
        """Try the next candidate when it is safe: nothing was sent, or an idempotent request
        whose response never began; never beyond ``max_attempts`` or the candidate list."""
        route = self.route
        self.attempt += 1
        can_retry = (
            route is not None
            and self.attempt < min(self.config.max_attempts, max(len(route.upstreams), 2))
            and not self.response_started
            # Once sent, only an idempotent request without a body may go again (its bytes
            # are all in upstream_head); a POST is never sent twice.
            and (not sent or (self.head.idempotent and not self.head.has_body))
        )
        if can_retry:
            self.engine.stats.retries += 1
            self.head_sent = False
            self.connect()
        else:
            self.answer_error(status, detail)

    def send_on(self, conn: UpstreamConnection) -> None:
        self.upconn = conn
        # The connection now carries this exchange (inline: once per request).
        conn.exchange = self
        conn.got_bytes = False
        if conn.head_buf:
            conn.head_buf = b""
        if conn.raw_heads:
            conn.raw_heads.clear()
        conn.in_head = True
        conn.pool.active += 1
        client = self.client
        if not self.upstream_head:
            self.upstream_head = core.request_head_for_upstream(
                self.head, client.client_ip, client.scheme_b, client.trusted, self.engine.via
            )
        head = self.upstream_head
        self.head_sent = True
        if self.body_buffer:
            conn.write(b"".join([head, *self.body_buffer]))
            self.body_buffer = None
            self.buffered = 0
            if client.read_paused and client.active is self:
                client._resume_reading()
        elif self.request_done:
            self.engine.write_later(conn, head)  # the whole request
        else:
            conn.write(head)
        if self.head.expect_continue and self.body_received == 0 and not self.request_done:
            client.write(_CONTINUE)
        if self.request_done:
            conn.timer.arm(_U_FIRST_BYTE, self.config.first_byte_timeout)

    # --- request body -------------------------------------------------------------------------
    def client_body(self, body: bytes) -> None:
        self.body_received += len(body)
        if self.body_received > self.config.limits.max_body:
            self.client.error = HttpError(413, "request body too large")
            raise self.client.error
        if self.head.chunked:
            body = b"%x\r\n%b\r\n" % (len(body), body)
        conn = self.upconn
        if conn is not None and self.head_sent and not self.finished:
            conn.write(body)
            if conn.write_paused:
                self.client._pause_reading()
        elif not self.finished:
            if self.body_buffer is None:
                self.body_buffer = []
            self.body_buffer.append(body)
            self.buffered += len(body)
            if self.buffered > HIGH_WATER:
                if self.waiting_body:
                    self.route_request()
                else:
                    self.client._pause_reading()

    def client_body_end(self) -> None:
        if self.head.websocket:
            return  # the tunnel decides when this exchange ends
        self.request_done = True
        if self.head.chunked:
            self.client_body_raw(b"0\r\n\r\n")
        if self.waiting_body:
            self.route_request()
            return
        conn = self.upconn
        if conn is not None and self.head_sent:
            conn.timer.arm(_U_FIRST_BYTE, self.config.first_byte_timeout)
        if self.finished:
            # We answered before the body was read (resolver answer, error); now it has been.
            self.client.exchange_done(self, self.keep_alive)

    def client_body_raw(self, data: bytes) -> None:
        conn = self.upconn
        if conn is not None and self.head_sent and not self.finished:
            conn.write(data)
        elif not self.finished:
            if self.body_buffer is None:
                self.body_buffer = []
            self.body_buffer.append(data)

    def upstream_write_paused(self, paused: bool) -> None:
        if paused:
            self.client._pause_reading()
        elif self.client.active is self and not self.client.queue:
            self.client._resume_reading()

    def client_write_paused(self, paused: bool) -> None:
        conn = self.upconn
        if conn is None:
            return
        if paused:
            conn.pause_reading()
        else:
            conn.resume_reading()

    # --- response -----------------------------------------------------------------------------
    def interim(self, status: int, raw_head: bytes) -> None:
        # 100 Continue is ours to send (see send_on); other 1xx go to HTTP/1.1 clients.
        if status != 100 and self.head.version == b"1.1":
            rh = core.response_head_for_client(
                raw_head, (), client_version=b"1.1", keep_alive=True, head_request=False
            )
            self.out.append(rh.head)

    def response_head(
        self,
        conn: UpstreamConnection,
        status: int,
        raw_head: bytes,
        upstream_keep_alive: bool,
    ) -> None:
        route = self.route
        head = self.head
        websocket = status == 101 and head.websocket
        if status == 101 and not websocket:
            self.upstream_invalid(conn, "101 without a WebSocket upgrade request")
            return
        # An answer that starts before the request body has all arrived ends the connection
        # (the rest of the body is drained, not parsed), so it says Connection: close.
        keep_alive = self.keep_alive and self.request_done and not self.client.closing
        rh = core.response_head_for_client(
            raw_head,
            route.response_headers if route is not None else (),
            client_version=head.version,
            keep_alive=keep_alive,
            head_request=head.method == b"HEAD",
            websocket=websocket,
        )
        self.status = status
        self.response_started = True
        self.keep_alive = rh.keep_alive
        self.client_framing = rh.framing
        self.upgraded = websocket
        # Does the upstream frame its body (length or chunked) or end it by closing?
        self.upstream_framing_known = rh.upstream_framed
        if head.method == b"HEAD" and (status >= 200 and status not in (204, 304)):
            # llhttp would wait for a body a HEAD response never has; finish here and do not
            # reuse the connection (its parser believes a body is coming).
            self.out.append(rh.head)
            self.upstream_keep_alive = False
            self.finished_response()
            return
        self.out.append(rh.head)
        self.upstream_keep_alive = upstream_keep_alive

    def response_end(self, upstream_keep_alive: bool) -> None:
        if self.finished:
            return
        if self.client_framing == CHUNKED:
            self.out.append(b"0\r\n\r\n")
        self.upstream_keep_alive = upstream_keep_alive
        self.finished = True

    def finished_response(self) -> None:
        self.finished = True

    def flush(self) -> None:
        """Called after each upstream read: one write for everything it produced."""
        out = self.out
        finished = self.finished and not self.upgraded
        if finished and not self.done:
            self._record(self.status)  # before the write, so a client never outruns the count
        if out:
            data = out[0] if len(out) == 1 else b"".join(out)
            out.clear()
            self.client.write(data)
        if finished:
            self.complete()

    def complete(self) -> None:
        conn = self.upconn
        self.upconn = None
        if conn is not None:
            if self.upstream_keep_alive and self.request_done and not conn.closed:
                conn.release()
            else:
                conn.detach()
                conn.close()
        if self.client_framing == CLOSE:
            self.keep_alive = False
        if not self.done:
            self._record(self.status)
        self.client.exchange_done(self, self.keep_alive)

    def _record(self, status: int) -> None:
        if self.done:
            return
        self.done = True
        route = self.route
        label = (route.label if route is not None else "") or (
            self.upstream.name if self.upstream is not None else "-"
        )
        self.engine.stats.record(label, status, self.client.loop.time() - self.started_at)
        if route is not None and route.on_done is not None:
            route.on_done(status)

    # --- our own answers ----------------------------------------------------------------------
    def answer_error(self, status: int, detail: str) -> None:
        route = self.route
        extra = route.response_headers if route is not None else ()
        retry_after = self.config.retry_after if status == 503 else None
        keep = self.keep_alive and self.request_done and status < 500
        page = core.error_page(
            status,
            detail,
            keep_alive=keep,
            retry_after=retry_after,
            headers=extra,
            head_request=self.head.method == b"HEAD",
        )
        self.send_own(status, page, keep)

    def send_own(self, status: int, data: bytes, keep_alive: bool) -> None:
        conn = self.upconn
        self.upconn = None
        if conn is not None:
            conn.detach()
            conn.close()
        self.status = status
        self.finished = True
        self.response_started = True
        self.keep_alive = keep_alive
        self._record(status)
        self.client.write(data)
        if self.request_done:
            self.client.exchange_done(self, keep_alive)
        elif not keep_alive:
            self.client.exchange_done(self, False)
        # else: exchange_done runs when the rest of the body has been read and discarded

    # --- failures -----------------------------------------------------------------------------
    def upstream_lost(self, conn: UpstreamConnection, exc: Exception | None, by_us: bool) -> None:
        if self.finished:
            if self.upgraded:
                self.client.close()
            return
        if by_us:
            return
        if self.response_started:
            if not self.upstream_framing_known and not self.upgraded:
                # A close-delimited body ends here.
                self.response_end(False)
                self.flush()
            else:
                self.abort()
                self.client.abort()
            return
        self.upconn = None
        if conn.got_bytes:
            self.answer_error(502, "upstream closed the connection mid-response")
        else:
            self.retry_or_fail(502, "upstream closed the connection", sent=True)

    def upstream_invalid(self, conn: UpstreamConnection, detail: str) -> None:
        log.warning("invalid response from %s: %s", conn.pool.upstream.key, detail)
        if self.response_started:
            self.abort()
            self.client.abort()
        else:
            self.answer_error(502, "invalid response from upstream")

    def upstream_timeout(self, conn: UpstreamConnection, first_byte: bool) -> None:
        if self.response_started:
            self.abort()
            self.client.abort()
        else:
            self.answer_error(504, "upstream did not answer in time")

    def abort(self) -> None:
        """Drop the upstream side without answering (the client is gone or already closing)."""
        conn = self.upconn
        self.upconn = None
        if conn is not None:
            conn.detach()
            conn.close()
        if not self.finished:
            self.finished = True
            self._record(self.status or 0)

    def client_gone(self) -> None:
        self.abort()

    # --- WebSocket tunnel ---------------------------------------------------------------------
    def tunnel_to_upstream(self, data: bytes) -> None:
        conn = self.upconn
        if conn is not None and conn.transport is not None:
            conn.write(data)
            if conn.write_paused:
                self.client._pause_reading()

    def tunnel_to_client(self, data: bytes) -> None:
        self.client.write(data)
        if self.client.write_paused and self.upconn is not None:
            self.upconn.pause_reading()
