"""Real-socket helpers for the proxy tests: an event loop in a thread, an origin server that
records every byte it receives, and a raw HTTP client.

The origin answers by path:
  /echo...     200, JSON of what it saw (method, target, headers, body)
  /big         200, 1 MiB (Content-Length)
  /chunked     200, a chunked body of three parts
  /eof         200, a body ended by closing the connection
  /slow-head   the response head after ``slow_seconds``
  /garbage     an invalid response
  /drop        closes the connection without answering
  /early       200 as soon as the request head is in, before any body
  /ws          101 when asked for a WebSocket, then echoes bytes back
  anything     200 "ok"
"""

from __future__ import annotations

import asyncio
import collections
import json
import socket
import time
import weakref

import httptools

from tests.support import LoopThread


class OriginProtocol(asyncio.Protocol):
    def __init__(self, origin: Origin) -> None:
        self.origin = origin
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.tunnel = False

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.origin.connections += 1
        self.origin.open.add(self)

    def connection_lost(self, exc) -> None:
        self.origin.open.discard(self)

    def data_received(self, data: bytes) -> None:
        self.origin.received += data
        if self.tunnel:
            self.transport.write(data)
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            pass
        except httptools.HttpParserError:
            self.transport.close()

    def on_message_begin(self) -> None:
        self.url = b""
        self.headers: list[tuple[str, str]] = []
        self.body = b""

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        if self.url.startswith(b"/early"):
            # Answers before reading the body (as an app that rejects an upload does).
            self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        self.origin.requests.append(
            {"method": self.parser.get_method().decode(), "target": self.url.decode("latin-1"),
             "headers": self.headers, "body": self.body.decode("latin-1")}
        )  # fmt: skip
        path = self.url.decode("latin-1")
        loop = asyncio.get_running_loop()
        if path.startswith("/early"):
            return  # answered at the end of the head
        if path.startswith("/slow-head"):
            loop.call_later(self.origin.slow_seconds, self.respond, path)
        else:
            self.respond(path)

    def respond(self, path: str) -> None:
        t = self.transport
        if t is None or t.is_closing():
            return
        name = self.origin.name.encode()
        if path.startswith("/echo"):
            body = json.dumps(self.origin.requests[-1]).encode()
            t.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Origin: %b\r\n"
                    b"Content-Length: %d\r\n\r\n%b" % (name, len(body), body))  # fmt: skip
        elif path == "/big":
            body = b"x" * (1024 * 1024)
            t.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        elif path == "/chunked":
            t.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Origin: %b\r\n\r\n"
                    b"5\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\n\r\n" % name)  # fmt: skip
        elif path == "/eof":
            t.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end")
            t.close()
        elif path.startswith("/drop"):
            t.close()  # read the request, answer nothing
        elif path == "/garbage":
            t.write(b"HTTP/9 what\r\n\r\n")
        elif path == "/hop":
            t.write(b"HTTP/1.1 200 OK\r\nConnection: X-Secret, keep-alive\r\nX-Secret: 1\r\n"
                    b"Keep-Alive: timeout=5\r\nX-Public: 1\r\n"
                    b"Content-Length: 2\r\n\r\nok")  # fmt: skip
        elif path == "/ws":
            if any(k.lower() == "upgrade" for k, _ in self.headers):
                t.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                        b"Connection: Upgrade\r\n\r\n")  # fmt: skip
                self.tunnel = True
            else:
                t.write(b"HTTP/1.1 426 Upgrade Required\r\nContent-Length: 0\r\n\r\n")
        else:
            t.write(b"HTTP/1.1 200 OK\r\nX-Origin: %b\r\nContent-Length: 2\r\n\r\nok" % name)


class Origin:
    """An origin server on the loop thread that records every byte it receives."""

    def __init__(self, lt: LoopThread, name: str = "origin", unix: str | None = None) -> None:
        self.lt = lt
        self.name = name
        self.received = b""
        self.requests: list[dict] = []
        self.connections = 0
        self.open: set[OriginProtocol] = set()
        self.slow_seconds = 0.0
        self.server: asyncio.base_events.Server | None = None
        self.unix = unix
        self.port = 0

    def start(self, port: int = 0) -> Origin:
        async def go():
            loop = asyncio.get_running_loop()
            if self.unix:
                return await loop.create_unix_server(lambda: OriginProtocol(self), self.unix)
            return await loop.create_server(lambda: OriginProtocol(self), "127.0.0.1", port)

        self.server = self.lt.run(go())
        if not self.unix:
            self.port = self.server.sockets[0].getsockname()[1]
        return self

    @property
    def address(self) -> str:
        return f"unix:{self.unix}" if self.unix else f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        async def go():
            self.server.close()
            for p in list(self.open):
                p.transport.abort()

        if self.server is not None:
            self.lt.run(go())
            self.server = None


class Response:
    def __init__(self) -> None:
        self.status = 0
        self.headers: list[tuple[str, str]] = []
        self.body = b""
        self.complete = False
        self.interim: list[int] = []

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None


class _Reader:
    """Parses a connection's responses, keeping bytes that belong to the next one."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.current = Response()
        self.done: collections.deque[Response] = collections.deque()
        self.stopped = False

    def on_header(self, name: bytes, value: bytes) -> None:
        self.current.headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        code = self.parser.get_status_code()
        if code < 200 and code != 101:
            self.current.interim.append(code)
            self.current.headers = []
        else:
            self.current.status = code

    def on_body(self, body: bytes) -> None:
        self.current.body += body

    def on_message_complete(self) -> None:
        if self.current.status:
            self.current.complete = True
            self.done.append(self.current)
            self.current = Response()


_readers: weakref.WeakKeyDictionary[socket.socket, _Reader] = weakref.WeakKeyDictionary()


def connect(port: int, timeout: float = 5.0) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.settimeout(timeout)
    return sock


def read_response(sock: socket.socket, head_request: bool = False) -> Response:
    """Read one response; EOF ends it (a close-delimited body or a closed connection)."""
    reader = _readers.get(sock)
    if reader is None:
        reader = _readers[sock] = _Reader()
    while not reader.done:
        if head_request and reader.current.status:
            resp, reader.current = reader.current, Response()
            reader.parser = httptools.HttpResponseParser(reader)
            return resp
        try:
            data = sock.recv(65536)
        except ConnectionResetError:
            data = b""
        if not data or reader.stopped:
            resp, reader.current = reader.current, Response()
            return resp
        try:
            reader.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            reader.stopped = True
    return reader.done.popleft()


def exchange(port: int, raw: bytes, timeout: float = 5.0) -> Response:
    """Send raw bytes on a new connection and read one response."""
    with connect(port, timeout) as sock:
        sock.sendall(raw)
        return read_response(sock)


def closed_by_peer(sock: socket.socket, timeout: float = 5.0) -> bool:
    """True when the peer closes the connection within ``timeout`` (EOF or reset)."""
    sock.settimeout(timeout)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if not sock.recv(65536):
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False
    return False


def get(host: str = "app.test", path: str = "/", extra: bytes = b"") -> bytes:
    return b"GET %b HTTP/1.1\r\nHost: %b\r\n%b\r\n" % (path.encode(), host.encode(), extra)


class MemoryTransport(asyncio.Transport):
    """An in-memory transport for driving the engine's protocols without sockets: keeps what
    is written, counts pauses."""

    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []
        self.closing = False
        self.paused = False

    def write(self, data) -> None:
        self.written.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closing

    def get_extra_info(self, name, default=None):
        return ("127.0.0.1", 40000) if name == "peername" else default

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        pass

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = True
