"""One connection to an upstream: its wire only. It feeds httptools with the upstream's bytes
and hands what they mean to the exchange it carries; it goes back to its pool (or closes) when
the exchange says so. It knows nothing of clients, routes or retries."""

from __future__ import annotations

import asyncio
import collections
from typing import TYPE_CHECKING

import httptools

from proxy.core import CHUNKED, HttpError, Timer
from proxy.engine._config import MAX_RESPONSE_HEAD
from proxy.engine._exchange import Phase
from proxy.engine._flow import FlowControl
from proxy.engine._timer import LazyTimer

if TYPE_CHECKING:
    from proxy.engine._exchange import Exchange
    from proxy.engine._pool import Pool

__all__ = ["UpstreamConnection"]

_NONE, _READ = int(Timer.NONE), int(Timer.READ)  # plain ints: see _downstream.py
_TUNNEL, _DONE = int(Phase.TUNNEL), int(Phase.DONE)


class UpstreamConnection(asyncio.Protocol):
    """Carries one exchange at a time, then goes back to its pool."""

    # No instance dict: less memory per connection, faster attribute access.
    __slots__ = (
        "closed",
        "deferred",
        "exchange",
        "flow",
        "got_bytes",
        "head_buf",
        "idle_since",
        "in_head",
        "loop",
        "parser",
        "pool",
        "raw_heads",
        "timer",
        "transport",
        "tunnel",
    )

    def __init__(self, pool: Pool, loop: asyncio.AbstractEventLoop) -> None:
        self.pool = pool
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        # Made at the first response that needs it: a whole simple response, read at once,
        # passes through without one (most connections to a sync worker never need it).
        self.parser: httptools.HttpResponseParser | None = None
        self.exchange: Exchange | None = None
        self.closed = False
        self.idle_since = 0.0
        self.timer = LazyTimer(loop, self._on_timeout)
        self.flow = FlowControl()
        self.tunnel = False
        # Response heads are taken raw from the byte stream (httptools validates them, the
        # core rewrites them in one regex pass): no Python call per header field.
        self.head_buf = b""
        self.raw_heads: collections.deque[bytes] = collections.deque()
        self.got_bytes = False  # any byte of the current exchange's response arrived
        self.in_head = True
        self.deferred = False  # a write of ours waits in Engine.write_later's batch

    def carry(self, exchange: Exchange) -> None:
        """Start carrying ``exchange``: a fresh response is expected."""
        self.exchange = exchange
        self.got_bytes = False
        if self.head_buf:
            self.head_buf = b""
        if self.raw_heads:
            self.raw_heads.clear()
        self.in_head = True
        self.pool.active += 1

    def write(self, data: bytes) -> None:
        """Write now, after anything of ours still waiting in Engine.write_later's batch."""
        if self.deferred:
            self.pool.engine.flush_writes()
        transport = self.transport
        if transport is not None:
            transport.write(data)

    def release(self, now: float | None = None) -> None:
        """Back to its pool: the exchange it carried is over and the upstream keeps it open."""
        self.exchange = None
        pool = self.pool
        pool.active -= 1
        self.timer.kind = _NONE
        if self.flow.read_paused:
            self.flow.resume_reading()  # an idle connection must see the upstream's EOF
        pool.put(self, now)

    def detach(self) -> None:
        if self.exchange is not None:
            self.exchange = None
            self.pool.active -= 1

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.timer.cancel()
            self.flow.detach()
            self.pool.discard(self)
            if self.transport is not None:
                self.transport.close()

    # --- asyncio.Protocol -------------------------------------------------------------------
    def connection_made(self, transport) -> None:
        self.transport = transport
        self.flow.attach(transport)

    def connection_lost(self, exc) -> None:
        was_closed = self.closed
        self.closed = True
        self.timer.cancel()
        self.flow.detach()
        self.pool.discard(self)
        exchange = self.exchange
        if exchange is not None:
            self.detach()
            exchange.upstream_lost(self, exc, was_closed)

    def pause_writing(self) -> None:
        self.flow.pause_writing()
        if self.exchange is not None:
            self.exchange.upstream_write_paused(True)

    def resume_writing(self) -> None:
        self.flow.resume_writing()
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
            # A whole response in one read with nothing to rewrite skips the parser.
            if not self.head_buf and exchange.pass_through(self, data):
                return
            if not self._scan_heads(data):
                exchange.upstream_invalid(self, "response head too large")
                return
        if self.timer.kind:
            # Bytes arrived: from now on the response may idle up to idle_timeout between
            # reads (rule T: READ once a response byte came).
            self.timer.kind = _READ
            self.timer.deadline = self.loop.time() + exchange.config.idle_timeout
        parser = self.parser
        if parser is None:
            parser = self.parser = httptools.HttpResponseParser(self)
        try:
            parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            exchange.flush()
            if exchange.phase == _TUNNEL:
                self.tunnel = True
                self.timer.cancel()
                exchange.tunnel_started(data[exc.args[0] :])
            return
        except httptools.HttpParserError as exc:
            exchange.upstream_invalid(self, str(exc))
            return
        exchange.flush()

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

    # --- httptools callbacks (during feed_data; the exchange may let go of this connection
    # in one of them, then the rest of the bytes fed are nobody's) -------------------------
    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        exchange = self.exchange
        if exchange is None:
            return
        if not self.raw_heads:
            # llhttp found a head where we did not: treat the response as invalid.
            raise HttpError(502, "unrecognised response head")
        raw = self.raw_heads.popleft()
        if status < 200 and status != 101:
            exchange.interim(status, raw)
            return
        self.in_head = False
        exchange.response_head(self, status, raw, self.parser.should_keep_alive())

    def on_body(self, body: bytes) -> None:
        exchange = self.exchange
        if exchange is None or exchange.phase == _DONE:
            return  # e.g. a body after a HEAD response: dropped, the connection is closed
        if exchange.client_framing == CHUNKED:
            body = b"%x\r\n%b\r\n" % (len(body), body)
        exchange.out.append(body)

    def on_message_complete(self) -> None:
        exchange = self.exchange
        if exchange is not None and not self.in_head:
            exchange.response_end(self.parser.should_keep_alive())

    def _on_timeout(self, kind: int) -> None:
        exchange = self.exchange
        if exchange is not None:
            exchange.upstream_timeout(self, kind)
        else:
            self.close()
