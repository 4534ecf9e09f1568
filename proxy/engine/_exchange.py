"""One request and its response: the exchange between a client connection and an upstream.

Phases, and the rules between them (``TRANSITIONS``; ``Exchange._enter`` is the one place
that changes the phase, and refuses any move the table does not list):

    QUEUED      the head is validated; the exchange waits for its turn on the connection, then
                asks the resolver (a plain function answers at once, in this phase)
    BODY        a small request body is read whole before routing (a body that turns out
                malformed then never reaches an upstream)
    ROUTING     an async resolver's task is pending
    CONNECTING  a connection to the current candidate is being made
    SENT        the request head went out on an upstream connection; no response head yet
    RESPONDING  the response head came; its body is relayed
    TUNNEL      a WebSocket tunnel after the upstream's 101: bytes both ways until a close
    DONE        over: the response is complete, ours was sent, or the exchange was abandoned

    QUEUED     -> BODY | ROUTING | CONNECTING | SENT (a pooled connection) | DONE (an answer,
                  an error)
    BODY       -> ROUTING | CONNECTING | SENT | DONE
    ROUTING    -> CONNECTING | SENT | DONE
    CONNECTING -> CONNECTING (the next candidate) | SENT | DONE
    SENT       -> CONNECTING (a retry, rule R) | RESPONDING | TUNNEL | DONE
    RESPONDING -> DONE
    TUNNEL, DONE: final (a tunnel ends with its connections)

Rule 1: entering TUNNEL or DONE counts the exchange (``Engine.stats``, the route's
``on_done``), so it is counted once, before the last bytes of its response are written (a
client never outruns the count). Rule 2: the response has begun exactly when its status is
known (``status != 0``); from then on a failure cannot be answered, only cut off. Which
failure may go to another candidate, which connection is kept and which timer runs are the
pure rules R, K and T of ``proxy.core``.

Facts that are not phases stay plain fields: ``request_done`` (the client's side: the whole
request has been read), ``keep_alive`` (what the client connection will do after this
response), and the response's framing towards the client.
"""

from __future__ import annotations

import asyncio
import enum
import inspect
import logging
import os
from typing import TYPE_CHECKING

from proxy import core
from proxy.core import CHUNKED, CLOSE, LENGTH, ClientState, Failure, HttpError, RequestHead, Timer
from proxy.engine._config import FILE_CHUNK, HIGH_WATER, FileBody, Route, Upstream

if TYPE_CHECKING:
    from proxy.engine._downstream import ClientConnection
    from proxy.engine._upstream import UpstreamConnection

log = logging.getLogger("proxy.engine")

__all__ = ["TRANSITIONS", "Exchange", "InvalidTransition", "Phase"]

_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class Phase(enum.IntEnum):
    QUEUED = 0
    BODY = 1
    ROUTING = 2
    CONNECTING = 3
    SENT = 4
    RESPONDING = 5
    TUNNEL = 6
    DONE = 7


TRANSITIONS: dict[Phase, frozenset[Phase]] = {
    Phase.QUEUED: frozenset({Phase.BODY, Phase.ROUTING, Phase.CONNECTING, Phase.SENT, Phase.DONE}),
    Phase.BODY: frozenset({Phase.ROUTING, Phase.CONNECTING, Phase.SENT, Phase.DONE}),
    Phase.ROUTING: frozenset({Phase.CONNECTING, Phase.SENT, Phase.DONE}),
    Phase.CONNECTING: frozenset({Phase.CONNECTING, Phase.SENT, Phase.DONE}),
    Phase.SENT: frozenset({Phase.CONNECTING, Phase.RESPONDING, Phase.TUNNEL, Phase.DONE}),
    Phase.RESPONDING: frozenset({Phase.DONE}),
    Phase.TUNNEL: frozenset(),
    Phase.DONE: frozenset(),
}
# The same table as one bit mask per phase: a check costs two integer operations.
_ALLOWED = tuple(sum(1 << p for p in TRANSITIONS[phase]) for phase in Phase)

# An exchange stores its phase as the plain int value (an IntEnum member costs more to
# compare, and phases are compared on every request); ``Phase(exchange.phase)`` names it.
_QUEUED, _BODY, _ROUTING, _CONNECTING, _SENT, _RESPONDING, _TUNNEL, _DONE = map(int, Phase)
_FIRST_BYTE, _T_IDLE = int(Timer.FIRST_BYTE), int(Timer.IDLE)
_C_IDLE, _C_CLOSED = int(ClientState.IDLE), int(ClientState.CLOSED)


class InvalidTransition(RuntimeError):
    """A phase change the table does not allow: a bug in the engine, never input."""


class Exchange:
    # Class-level defaults: an exchange sets only what differs (one per request, so the
    # attribute stores it saves are worth the instance dict).
    phase = _QUEUED
    route: Route | None = None
    extra: tuple[tuple[bytes, bytes], ...] = ()  # the route's response headers
    upconn: UpstreamConnection | None = None
    upstream: Upstream | None = None
    upstream_head = b""
    body_buffer: list[bytes] | None = None
    buffered = 0
    body_received = 0
    client_framing = LENGTH
    upstream_keep_alive = False
    upstream_framing_known = True
    status = 0
    attempt = 0
    file_fd = -1  # an answer's body file being sent (send_file)
    file_offset = 0
    file_left = 0

    def __init__(self, client: ClientConnection, head: RequestHead) -> None:
        self.client = client
        self.engine = client.engine
        self.config = client.config
        self.head = head
        self.request_done = not (head.chunked or head.content_length)
        self.out: list[bytes] = []
        # Rule K's "asked" (after anything but a 101 to a WebSocket request the parser
        # cannot go on).
        self.keep_alive = head.keep_alive and not head.websocket
        self.started_at = client.loop.time()

    def _enter(self, phase: int) -> None:
        """The one place the phase changes (the table at the top of this module); entering
        TUNNEL or DONE counts the exchange with its ``status`` (rule 1)."""
        if not _ALLOWED[self.phase] >> phase & 1:
            raise InvalidTransition(f"exchange: {Phase(self.phase).name} -> {Phase(phase).name}")
        self.phase = phase
        if phase >= _TUNNEL:
            route = self.route
            label = (route.label if route is not None else "") or (
                self.upstream.name if self.upstream is not None else "-"
            )
            status = self.status
            self.engine.stats.record(label, status, self.client.loop.time() - self.started_at)
            if route is not None and route.on_done is not None:
                route.on_done(status)

    @property
    def response_started(self) -> bool:
        return self.status != 0  # rule 2

    # --- routing ------------------------------------------------------------------------------
    def start(self) -> None:
        # A body up to HIGH_WATER is read before anything goes upstream, so a request whose
        # body turns out malformed (a bad chunk) never reaches the backend. Larger bodies
        # stream. Expect: 100-continue cannot wait: the client waits for us.
        if not self.request_done and self.buffered <= HIGH_WATER and not self.head.expect_continue:
            self._enter(_BODY)
            return
        self.route_request()

    def route_request(self) -> None:
        try:
            route = self.engine.resolver(self.head, self.client.client)
        except HttpError as exc:
            self.answer_error(exc.status, exc.detail)
            return
        if type(route) is Route:
            if route.answer is None and route.upstreams:
                # The common case, inline: a pooled connection to the first candidate.
                self.route = route
                self.extra = route.response_headers
                upstream = self.upstream = route.upstreams[0]
                pool = self.engine.pools.get(upstream.key)
                if pool is not None:
                    conn = pool.take()
                    if conn is not None:
                        self.send_on(conn)
                        return
            self.routed(route)
        elif inspect.isawaitable(route):
            self._enter(_ROUTING)
            task = asyncio.ensure_future(route)
            task.add_done_callback(self._resolved)
        else:
            self.routed(route)

    def _resolved(self, task: asyncio.Future) -> None:
        if self.phase == _DONE:
            # The client went away while the resolver worked: the route is not used, but its
            # on_done still runs once, so the resolver's bookkeeping stays balanced.
            if not task.cancelled() and task.exception() is None:
                route = task.result()
                if route.answer is not None and route.answer.file is not None:
                    os.close(route.answer.file.fd)
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
        self.extra = route.response_headers
        if route.answer is not None:
            answer = route.answer
            keep = core.keep_client(
                asked=self.keep_alive, request_done=self.request_done, closing=self.client.closing
            )
            head = core.render_answer(
                answer.status,
                answer.body,
                content_type=answer.content_type,
                headers=answer.headers + route.response_headers,
                keep_alive=keep,
                head_request=self.head.method == b"HEAD",
                content_length=answer.file.count if answer.file is not None else answer.length,
            )
            if answer.file is not None:
                self.send_file(answer.status, head, answer.file, keep)
            else:
                self.send_own(answer.status, head, keep)
            return
        if not route.upstreams:
            self.answer_error(503, "no backend available")
            return
        self.connect(route)

    def connect(self, route: Route) -> None:
        self._enter(_CONNECTING)
        ups = route.upstreams
        upstream = ups[self.attempt % len(ups)]
        self.upstream = upstream
        pool = self.engine.pool(upstream)
        conn = pool.take()
        if conn is not None:
            self.send_on(conn)
            return
        task = asyncio.ensure_future(pool.connect())
        task.add_done_callback(lambda task: self._connected(task, upstream))

    def _connected(self, task: asyncio.Future, upstream: Upstream) -> None:
        exc = None if task.cancelled() else task.exception()
        if task.cancelled() or exc is not None:
            self.engine.health.failed(upstream.name)
            timeout = isinstance(exc, TimeoutError)
            log.warning("connect to %s (%s) failed: %r", upstream.name, upstream.key, exc)
            if self.phase != _DONE:
                self.retry_or_fail(Failure.CONNECT, 504 if timeout else 502, "upstream unreachable")
            return
        conn: UpstreamConnection = task.result()
        self.engine.health.succeeded(upstream.name)
        if self.phase == _DONE:
            # The client went away while we connected. The connection never carried a
            # request, and it is not pooled: the peer may be a sync gunicorn worker that has
            # accepted it and now waits on it for a request, serving nobody else until it
            # closes.
            conn.close()
            return
        self.send_on(conn)

    def retry_or_fail(self, failure: Failure, status: int, detail: str) -> None:
        """Try the next candidate when rule R allows it, else answer ``status``."""
        route = self.route
        self.attempt += 1
        if route is not None and core.may_retry(
            self.head,
            failure,
            response_started=self.response_started,
            attempt=self.attempt,
            max_attempts=self.config.max_attempts,
            candidates=len(route.upstreams),
        ):
            stats = self.engine.stats
            stats.retries += 1
            if self.attempt == 1:  # leaving the first choice: a fallback, by its reason
                stats.fallbacks[failure.value] += 1
            self.connect(route)
        else:
            self.answer_error(status, detail)

    def send_on(self, conn: UpstreamConnection) -> None:
        self._enter(_SENT)
        self.upconn = conn
        conn.carry(self)
        client = self.client
        if not self.upstream_head:
            self.upstream_head = core.request_head_for_upstream(
                self.head, client.client_ip, client.scheme_b, client.trusted, self.engine.via
            )
        head = self.upstream_head
        if self.body_buffer:
            conn.write(b"".join([head, *self.body_buffer]))
            self.body_buffer = None
            self.buffered = 0
            if client.active is self:
                client.flow.resume_reading()
        elif self.request_done:
            self.engine.write_later(conn, head)  # the whole request
        else:
            conn.write(head)
        if self.head.expect_continue and self.body_received == 0 and not self.request_done:
            client.write(_CONTINUE)
        if self.request_done:
            # Rule T for a request sent whole and no response byte yet (carry() reset it).
            conn.timer.arm(_FIRST_BYTE, self.first_byte_seconds())

    def first_byte_seconds(self) -> float:
        route = self.route
        return (route.first_byte_timeout if route is not None else 0.0) or (
            self.config.first_byte_timeout
        )

    # --- request body -------------------------------------------------------------------------
    def client_body(self, body: bytes) -> None:
        self.body_received += len(body)
        if self.body_received > self.config.limits.max_body:
            self.client.error = HttpError(413, "request body too large")
            raise self.client.error
        if self.head.chunked:
            body = b"%x\r\n%b\r\n" % (len(body), body)
        conn = self.upconn
        phase = self.phase
        if conn is not None and _SENT <= phase <= _RESPONDING:
            conn.write(body)
            if conn.flow.write_paused:
                self.client.flow.pause_reading()
        elif phase != _DONE:
            if self.body_buffer is None:
                self.body_buffer = []
            self.body_buffer.append(body)
            self.buffered += len(body)
            if self.buffered > HIGH_WATER:
                if phase == _BODY:
                    self.route_request()
                else:
                    self.client.flow.pause_reading()

    def client_body_end(self) -> None:
        if self.head.websocket:
            return  # the tunnel decides when this exchange ends
        self.request_done = True
        if self.head.chunked:
            self.client_body_raw(b"0\r\n\r\n")
        if self.phase == _BODY:
            self.route_request()
            return
        conn = self.upconn
        if conn is not None and self.phase >= _SENT:
            kind = core.upstream_timer(request_done=True, got_bytes=conn.got_bytes)
            if kind == _FIRST_BYTE:
                conn.timer.arm(kind, self.first_byte_seconds())
            else:
                conn.timer.arm(kind, self.engine.seconds[kind])
        if self.phase == _DONE:
            # We answered before the body was read (resolver answer, error); now it has been.
            self.client.exchange_done(self, self.keep_alive)

    def client_body_raw(self, data: bytes) -> None:
        conn = self.upconn
        phase = self.phase
        if conn is not None and _SENT <= phase <= _RESPONDING:
            conn.write(data)
        elif phase != _DONE:
            if self.body_buffer is None:
                self.body_buffer = []
            self.body_buffer.append(data)

    def upstream_write_paused(self, paused: bool) -> None:
        if paused:
            self.client.flow.pause_reading()
        elif self.client.active is self and not self.client.queue:
            self.client.flow.resume_reading()

    def client_write_paused(self, paused: bool) -> None:
        if not paused and self.file_fd >= 0:
            self.pump_file()
            return
        conn = self.upconn
        if conn is None:
            return
        if paused:
            conn.flow.pause_reading()
        else:
            conn.flow.resume_reading()

    # --- response -----------------------------------------------------------------------------
    def pass_through(self, conn: UpstreamConnection, data: bytes) -> bool:
        """The first read of a response: when it is a whole response with nothing to rewrite
        (``core.pass_through_response``; or only its ``Connection: close`` to cut,
        ``core.pass_through_closing_response``) for a keep-alive HTTP/1.1 client, write it as
        it came, give ``conn`` back to its pool (close it, for the latter) and the client
        connection back to its keep-alive wait.
        ``flush``, ``complete`` and the rules K for this case, inline (once per request);
        tests/proxy/test_inline_copies.py holds them equal to the long way."""
        head = self.head
        if not (
            self.keep_alive
            and self.request_done
            and head.version == b"1.1"
            and head.method != b"HEAD"
            and not head.websocket
            and not self.client.closing
        ):
            return False
        out = core.pass_through_response(data, self.extra)
        reuse = True
        if out is None:
            # A sync worker's answer: passed through all the same, its connection closed.
            out = core.pass_through_closing_response(data, self.extra)
            if out is None:
                return False
            reuse = False
        conn.in_head = False
        self.status = int(data[9:12])
        self.upconn = None
        self._enter(_DONE)
        now = conn.loop.time()
        client = self.client
        if client.transport is not None:
            self.engine.write_later(client, out)
        if reuse:
            conn.release(now)
        else:
            conn.detach()
            conn.close()
        if (
            client.active is self
            and not client.closing
            and not client.queue
            and not client.head_started
            and client.parsing is None
        ):
            # ClientConnection.exchange_done for a keep-alive client with nothing queued,
            # inline (once per request; tests/proxy/test_inline_copies.py).
            client.active = None
            client.state = _C_IDLE
            client.timer.arm_at(_T_IDLE, now + client.config.idle_timeout)
            if client.flow.read_paused:
                client.flow.resume_reading()
        else:
            client.exchange_done(self, True)
        return True

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
        head = self.head
        websocket = status == 101 and head.websocket
        if status == 101 and not websocket:
            self.upstream_invalid(conn, "101 without a WebSocket upgrade request")
            return
        self.status = status  # rule 2: the response has begun
        self._enter(_TUNNEL if websocket else _RESPONDING)
        # An answer that starts before the request body has all arrived ends the connection
        # (the rest of the body is drained, not parsed), so it says Connection: close.
        keep_alive = core.keep_client(
            asked=self.keep_alive, request_done=self.request_done, closing=self.client.closing
        )
        rh = core.response_head_for_client(
            raw_head,
            self.extra,
            client_version=head.version,
            keep_alive=keep_alive,
            head_request=head.method == b"HEAD",
            websocket=websocket,
        )
        self.keep_alive = rh.keep_alive
        self.client_framing = rh.framing
        # Does the upstream frame its body (length or chunked) or end it by closing?
        self.upstream_framing_known = rh.upstream_framed
        self.out.append(rh.head)
        self.upstream_keep_alive = upstream_keep_alive
        if core.ends_at_head(head.method, status):
            # llhttp would wait for a body a HEAD response never has: finish here (rule K
            # then closes the upstream connection: its parser believes a body is coming).
            self._enter(_DONE)

    def response_end(self, upstream_keep_alive: bool) -> None:
        if self.phase != _RESPONDING:
            return  # ended at its head, or a tunnel's 101
        if self.client_framing == CHUNKED:
            self.out.append(b"0\r\n\r\n")
        self.upstream_keep_alive = upstream_keep_alive
        self._enter(_DONE)

    def flush(self) -> None:
        """Called after each upstream read: one write for everything it produced."""
        out = self.out
        if out:
            data = out[0] if len(out) == 1 else b"".join(out)
            out.clear()
            self.client.write(data)
        if self.phase == _DONE:
            self.complete()

    def complete(self) -> None:
        conn = self.upconn
        self.upconn = None
        if conn is not None:
            if not conn.closed and core.reuse_upstream(
                keep_alive=self.upstream_keep_alive,
                request_done=self.request_done,
                method=self.head.method,
                status=self.status,
            ):
                conn.release()
            else:
                conn.detach()
                conn.close()
        if self.client_framing == CLOSE:
            self.keep_alive = False
        self.client.exchange_done(self, self.keep_alive)

    # --- our own answers ----------------------------------------------------------------------
    def answer_error(self, status: int, detail: str) -> None:
        retry_after = self.config.retry_after if status == 503 else None
        keep = core.keep_client(
            asked=self.keep_alive,
            request_done=self.request_done,
            closing=self.client.closing,
            error_status=status,
        )
        page = core.error_page(
            status,
            detail,
            keep_alive=keep,
            retry_after=retry_after,
            headers=self.extra,
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
        self.keep_alive = keep_alive
        self._enter(_DONE)
        self.client.write(data)
        if self.request_done:
            self.client.exchange_done(self, keep_alive)
        elif not keep_alive:
            self.client.exchange_done(self, False)
        # else: exchange_done runs when the rest of the body has been read and discarded

    def send_file(self, status: int, head: bytes, body: FileBody, keep_alive: bool) -> None:
        """Our own answer with its body in a file: counted as it starts (rule 1), handed back
        to the client connection once all of it is sent."""
        self.status = status
        self.keep_alive = keep_alive
        self.file_fd, self.file_offset, self.file_left = body.fd, body.offset, body.count
        self._enter(_DONE)
        self.client.write(head)
        self.pump_file()

    def pump_file(self) -> None:
        client = self.client
        transport = client.transport
        # Raw file bytes may go straight to a plain socket, never to one under TLS.
        sock = None
        if (
            transport.get_extra_info("sslcontext") is None
            and transport.get_extra_info("ssl_object") is None
        ):
            sock = transport.get_extra_info("socket")
        try:
            while self.file_left > 0:
                if client.state == _C_CLOSED or transport.is_closing():
                    self.close_file()
                    return
                if client.flow.write_paused:
                    return  # client_write_paused(False) calls again
                sent = 0
                if sock is not None and transport.get_write_buffer_size() == 0:
                    try:
                        sent = os.sendfile(
                            sock.fileno(), self.file_fd, self.file_offset, self.file_left
                        )
                    except BlockingIOError:
                        sent = 0
                if not sent:
                    chunk = os.pread(
                        self.file_fd, min(FILE_CHUNK, self.file_left), self.file_offset
                    )
                    if not chunk:
                        raise OSError("the file ended before its announced length")
                    transport.write(chunk)
                    sent = len(chunk)
                self.file_offset += sent
                self.file_left -= sent
        except OSError as exc:
            log.info("file answer cut short: %s", exc)
            self.close_file()
            client.abort()
            return
        self.close_file()
        if self.request_done:
            client.exchange_done(self, self.keep_alive)
        elif not self.keep_alive:
            client.exchange_done(self, False)

    def close_file(self) -> None:
        if self.file_fd >= 0:
            os.close(self.file_fd)
            self.file_fd = -1

    # --- failures -----------------------------------------------------------------------------
    def upstream_lost(self, conn: UpstreamConnection, exc: Exception | None, by_us: bool) -> None:
        phase = self.phase
        if phase == _TUNNEL:
            self.client.close()
            return
        if phase == _DONE or by_us:
            return
        if phase == _RESPONDING:
            if not self.upstream_framing_known:
                # A close-delimited body ends here.
                self.response_end(False)
                self.flush()
            else:
                self.abort()
                self.client.abort()
            return
        self.upconn = None
        if conn.got_bytes:
            self.retry_or_fail(
                Failure.CLOSED_ANSWERING, 502, "upstream closed the connection mid-response"
            )
        else:
            self.retry_or_fail(Failure.CLOSED_UNANSWERED, 502, "upstream closed the connection")

    def upstream_invalid(self, conn: UpstreamConnection, detail: str) -> None:
        log.warning("invalid response from %s: %s", conn.pool.upstream.key, detail)
        if self.response_started:
            self.abort()
            self.client.abort()
        else:
            self.retry_or_fail(Failure.INVALID, 502, "invalid response from upstream")

    def upstream_timeout(self, conn: UpstreamConnection, kind: int) -> None:
        if self.response_started:
            self.abort()
            self.client.abort()
        else:
            self.retry_or_fail(Failure.TIMEOUT, 504, "upstream did not answer in time")

    def abort(self) -> None:
        """Drop the upstream side without answering (the client is gone or already closing)."""
        conn = self.upconn
        self.upconn = None
        if conn is not None:
            conn.detach()
            conn.close()
        if self.phase < _TUNNEL:
            self._enter(_DONE)

    def client_gone(self) -> None:
        self.close_file()
        self.abort()

    # --- WebSocket tunnel ---------------------------------------------------------------------
    def tunnel_started(self, tail: bytes) -> None:
        """The upstream's 101 went to the client: relay bytes both ways from now on."""
        self.client.start_tunnel()
        if tail:
            self.tunnel_to_client(tail)

    def tunnel_to_upstream(self, data: bytes) -> None:
        conn = self.upconn
        if conn is not None and conn.transport is not None:
            conn.write(data)
            if conn.flow.write_paused:
                self.client.flow.pause_reading()

    def tunnel_to_client(self, data: bytes) -> None:
        self.client.write(data)
        if self.client.flow.write_paused and self.upconn is not None:
            self.upconn.flow.pause_reading()
