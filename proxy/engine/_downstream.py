"""One client connection: it feeds httptools with the client's bytes, validates each request
head with the pure core, and runs the exchanges of its requests in order (pipelined ones wait
in a queue, their reads paused). Its states and the timer each one runs are rule T of
``proxy.core`` (``ClientState``, ``client_timer``)."""

from __future__ import annotations

import asyncio
import collections
import logging
from typing import TYPE_CHECKING

import httptools

from proxy import core
from proxy.core import ClientState, HttpError, Timer
from proxy.engine._config import HIGH_WATER, Client
from proxy.engine._exchange import Exchange
from proxy.engine._flow import FlowControl
from proxy.engine._timer import LazyTimer

if TYPE_CHECKING:
    from proxy.engine._engine import Engine

log = logging.getLogger("proxy.engine")

__all__ = ["ClientConnection"]

# States and timers as their plain int values: an IntEnum member costs more to compare (the
# interpreter's fast paths are for exact ints), and these are compared on every request.
_IDLE, _HEAD, _BUSY, _TUNNEL, _LINGER, _CLOSED = map(int, ClientState)
_T_NONE, _T_HEADER, _T_BODY = int(Timer.NONE), int(Timer.HEADER), int(Timer.BODY)
_NOBODY = Client("", 0, "http")  # until the connection is made


class ClientConnection(asyncio.Protocol):
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
        "flow",
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
        "scheme",
        "scheme_b",
        "state",
        "timer",
        "transport",
        "trusted",
        "upgrade_pending",
        "upgrade_tail",
        "url",
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
        self.timer = LazyTimer(self.loop, self._on_timeout)
        self.flow = FlowControl()
        self.state = _HEAD  # a new connection owes us a request head within header_timeout
        self.client = _NOBODY
        self.client_ip = b""
        self.trusted = False
        self.deferred = False  # a write of ours waits in Engine.write_later's batch
        self.queue: collections.deque[Exchange] = collections.deque()
        self.active: Exchange | None = None  # the exchange whose response is being relayed
        self.parsing: Exchange | None = None  # the exchange receiving request body events
        self.closing = False  # close once the current exchange ends (shutdown, errors)
        self.error: HttpError | None = None
        self.upgrade_tail = b""
        self.feeding = 0  # length of the chunk being fed to the parser
        self.upgrade_pending = False
        self.head_started = False
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_bytes = 0
        self.in_head = True

    def _enter(self, state: int, reading_body: bool = False) -> None:
        """Move to ``state`` and run the timer rule T gives it."""
        self.state = state
        kind = core.client_timer(state, reading_body)
        if kind:
            self.timer.arm(kind, self.engine.seconds[kind])
        else:
            self.timer.disarm()

    # --- asyncio.Protocol -------------------------------------------------------------------
    def connection_made(self, transport) -> None:
        self.transport = transport
        self.flow.attach(transport)
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
        self._enter(_HEAD)

    def connection_lost(self, exc) -> None:
        self.state = _CLOSED
        self.timer.cancel()
        self.flow.detach()
        self.engine._forget(self)
        for exchange in (self.active, *self.queue):
            if exchange is not None:
                exchange.client_gone()
        self.active = None
        self.queue.clear()

    def pause_writing(self) -> None:
        self.flow.pause_writing()
        if self.active is not None:
            self.active.client_write_paused(True)

    def resume_writing(self) -> None:
        self.flow.resume_writing()
        if self.active is not None:
            self.active.client_write_paused(False)

    def data_received(self, data: bytes) -> None:
        state = self.state
        if state == _TUNNEL:
            active = self.active
            if active is not None:
                active.tunnel_to_upstream(data)
            return
        if state >= _LINGER:  # LINGER or CLOSED: nothing more is read
            return
        if self.upgrade_pending:
            # The parser stopped at an upgrade; hold early bytes for the tunnel (bounded).
            self.upgrade_tail += data
            if len(self.upgrade_tail) > HIGH_WATER:
                self.flow.pause_reading()
            return
        if state <= _HEAD and not self.trusted and not self.head_started and self.active is None:
            # Between requests: a whole head of the usual shape skips the parser's callbacks
            # (core.simple_request rebuilds heads for untrusted peers: X-Forwarded-* dropped).
            simple = core.simple_request(
                data, self.limits, self.client_ip, self.scheme_b, self.engine.via
            )
            if simple is not None:
                # _enter(_BUSY), inline (once per request): rule T gives a BUSY connection
                # without a body to read no timer (tests/proxy/test_inline_copies.py).
                self.state = _BUSY
                self.timer.kind = _T_NONE
                exchange = Exchange(self, simple[0])
                exchange.upstream_head = simple[1]
                self.active = exchange
                exchange.route_request()
                return
        if state == _IDLE:
            self._enter(_HEAD)
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
        self.url = b""
        self.headers = []
        self.head_bytes = 0
        self.in_head = True
        self.head_started = True
        if self.state == _IDLE:
            self._enter(_HEAD)

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
        self._enter(_BUSY, reading_body=head.has_body)
        exchange = Exchange(self, head)
        self.parsing = exchange
        self.queue.append(exchange)
        if self.active is not None:
            # A pipelined request: hold further reads until the current response is done.
            self.flow.pause_reading()

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

    # --- exchanges ----------------------------------------------------------------------------
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
            self._enter(_HEAD)
        elif self.parsing is None:
            self._enter(_IDLE)
        if self.flow.read_paused:
            self.flow.resume_reading()

    def start_tunnel(self) -> None:
        self.state = _TUNNEL
        self.upgrade_pending = False
        self.timer.cancel()  # rule T: a tunnel runs no timer
        tail, self.upgrade_tail = self.upgrade_tail, b""
        active = self.active
        if tail and active is not None:
            active.tunnel_to_upstream(tail)
        self.flow.resume_reading()

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
        self.flow.resume_reading()
        if transport.can_write_eof():
            transport.write_eof()
            self._enter(_LINGER)
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
