"""What the engine's users hand it and get from it: upstreams, routes, answers, the client as
the resolver sees it, and the configuration. Plain frozen values, no I/O."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from proxy.core import Limits, RequestHead
from routing.addresses import InvalidAddress, parse_address

__all__ = [
    "FILE_CHUNK",
    "HIGH_WATER",
    "MAX_RESPONSE_HEAD",
    "Answer",
    "Client",
    "EngineConfig",
    "FileBody",
    "Resolver",
    "Route",
    "Upstream",
]

FILE_CHUNK = 256 * 1024  # a file body's read size when the socket does not take it directly
HIGH_WATER = 64 * 1024  # bytes buffered for one direction before the reader is paused
MAX_RESPONSE_HEAD = 64 * 1024


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
        """``host:port``, ``[v6]:port`` (``routing.addresses.parse_address``), ``unix:/path``
        or ``/path``; ``InvalidAddress`` (a ``ValueError``) for anything else."""
        if address.startswith("unix:"):
            return cls(name or address, unix=address[5:])
        if address.startswith("/"):
            return cls(name or address, unix=address)
        try:
            parsed = parse_address(address)
        except InvalidAddress as exc:
            raise InvalidAddress(f"upstream {exc} (nor unix:/path)") from None
        return cls(name or address, host=parsed.bind_host, port=parsed.port)


@dataclass(frozen=True, slots=True)
class Answer:
    """A response the resolver gives itself (404 page, 503 with Retry-After, ...)."""

    status: int
    body: bytes = b""
    content_type: bytes = b"text/plain; charset=utf-8"
    headers: tuple[tuple[bytes, bytes], ...] = ()
    # The body as ``count`` bytes of an open file from ``offset`` (the engine closes ``fd``)...
    file: FileBody | None = None
    # ...or the Content-Length to announce for a body that is not sent (HEAD, 304).
    length: int | None = None


@dataclass(frozen=True, slots=True)
class FileBody:
    """An answer's body in a file: sent with ``os.sendfile`` while the socket takes it whole,
    else read in ``FILE_CHUNK`` pieces paced by the client's flow control."""

    fd: int
    offset: int
    count: int


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
    # How long this request's upstream may take to its first response byte (then 504); 0: the
    # engine's ``first_byte_timeout``.
    first_byte_timeout: float = 0.0


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
