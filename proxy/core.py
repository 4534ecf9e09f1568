"""The pure core of the proxy: request validation, upstream request heads, response rewriting,
error pages. Bytes and plain values in, decisions out; no sockets, no event loop, no clock.

Rules (RFC 9110 / RFC 9112), applied on top of httptools (llhttp), which already refuses bare
LF and bare CR, obs-fold, control characters in the request line and in field values, invalid
field names, Content-Length together with Transfer-Encoding, duplicate or malformed
Content-Length, unknown methods and malformed chunk sizes or chunk framing:

 1. request line (the target) longer than ``Limits.max_request_line``        -> 414
 2. header block larger than ``max_header_bytes`` or more than ``max_header_count`` fields -> 431
 3. declared body larger than ``max_body`` (checked before any body byte is read) -> 413
 4. a version other than HTTP/1.0 or HTTP/1.1                                 -> 505
 5. CONNECT (this is not a forward proxy)                                     -> 501
 6. a Transfer-Encoding other than exactly ``chunked``                        -> 501
 7. Transfer-Encoding in an HTTP/1.0 request, or twice                        -> 400
 8. no Host, several Host fields, or a Host with bytes outside visible ASCII  -> 400
 9. absolute-form whose authority differs from Host, or not http(s)           -> 400
10. asterisk-form other than ``OPTIONS *``, any other form not origin-form    -> 400
11. an Expect other than ``100-continue``                                     -> 417
12. a WebSocket upgrade that also carries a body                              -> 400
Every refusal closes the connection, and the backend sees nothing of the request.

The engine's cold-path decisions are pure functions here too (end of this file), each with its
table of cases in tests/proxy/test_decisions.py:

R. Retry (``may_retry``): a failed exchange goes to the next upstream candidate only while its
   response has not begun and attempts remain (``max_attempts``, and at most the number of
   candidates, but at least two so that a stale pooled connection to a lone upstream gets one
   fresh try). A failed connect sent nothing, so any request may go again; an upstream that
   closed before answering may have seen the request, so only an idempotent request without
   a body (whose bytes are all in its rebuilt head) goes again. A POST is never sent twice.
   Any other failure (bytes of an answer came, an invalid response, a timeout) is final.
K. Keep-alive. The client connection carries another request (``keep_client``) when the
   client asked for it (and is not upgrading to a WebSocket), its whole request was read (the
   rest of a body is otherwise drained, not parsed), the proxy is not closing the connection,
   and the answer is not an error page of ours for our side's failure (5xx). An upstream
   connection goes back to its pool (``reuse_upstream``) when the upstream did not say close,
   it received the whole request, and its parser stands at a message boundary: not after a
   HEAD response whose status could carry a body, which the engine ends at its head
   (``ends_at_head``) while llhttp would wait for that body.
T. Timers (``client_timer``, ``upstream_timer``, ``timer_seconds``), one per connection:
       where the connection is            timer       length              on expiry
       client between requests            IDLE        idle_timeout        close
       client sending a head (or new)     HEADER      header_timeout      408, close
       client sending a request body      BODY        idle_timeout [1]    408 [2]
       client draining after a refusal    LINGER      LINGER_SECONDS      close
       client otherwise busy, tunnel      NONE
       upstream, request not all sent     NONE        (the client's BODY timer runs)
       upstream, no response byte yet     FIRST_BYTE  first_byte_timeout  504 [2]
       upstream, response under way       READ        idle_timeout [1]    504 [2]
   [1] between two reads. [2] once the response has begun: both connections are aborted.
   A connect has its own bound (``connect_timeout``, then the next candidate, else 504).

The upstream request is rebuilt from the validated fields: origin-form target, one Host,
our own framing header, hop-by-hop fields (and every field named in Connection) removed,
Via appended, X-Forwarded-For/-Proto/-Host set (a client's own values are kept only when the
peer is a trusted proxy), X-Request-ID kept when well formed and sent by a trusted proxy, else
generated. A field whose name contains ``_`` is dropped: servers map ``-`` and ``_`` alike to
one CGI variable, so ``SCRIPT_NAME: /x`` would pass for a field the proxy set (or rewrite the
app's PATH_INFO).
"""

from __future__ import annotations

import enum
import itertools
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from http import HTTPStatus

__all__ = [
    "HOP_BY_HOP",
    "LINGER_SECONDS",
    "ClientState",
    "Failure",
    "HttpError",
    "Limits",
    "RequestHead",
    "ResponseHead",
    "Timer",
    "client_timer",
    "ends_at_head",
    "error_page",
    "keep_client",
    "may_retry",
    "render_answer",
    "request_head_for_upstream",
    "response_head_for_client",
    "reuse_upstream",
    "simple_request",
    "timer_seconds",
    "upstream_timer",
    "validate_request",
]

# Fields that describe one connection, never forwarded (RFC 9110 7.6.1), plus the ones this
# proxy rewrites itself (framing, Host, forwarding, Expect).
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)
_REWRITTEN = frozenset(
    {
        b"host",
        b"content-length",
        b"expect",
        b"via",
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-forwarded-host",
        b"forwarded",
        b"x-request-id",
    }
)
_DROP_FROM_REQUEST = HOP_BY_HOP | _REWRITTEN
IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"})
_VISIBLE_ASCII = bytes(range(0x21, 0x7F))
_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:+/=-]{1,200}")
_ABSOLUTE = re.compile(rb"(?i:(https?))://([^/?#]+)([^#]*)")


class HttpError(Exception):
    """A request this proxy refuses; ``status`` is the answer, ``detail`` says why."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"{status} {detail}")
        self.status = status
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Limits:
    max_request_line: int = 8 * 1024
    max_header_bytes: int = 32 * 1024
    max_header_count: int = 100
    max_body: int = 100 * 1024 * 1024


class RequestHead:
    """A validated request head. ``headers`` holds only the end-to-end fields to forward.

    One is made per request, so an instance stores only what differs from the usual request
    (HTTP/1.1, keep-alive, no body, no forwarding fields of the client's own): the defaults are
    class attributes, and building the usual head costs four stores instead of sixteen."""

    version: bytes = b"1.1"  # b"1.1" or b"1.0"
    content_length: int | None = None
    chunked: bool = False
    keep_alive: bool = True
    expect_continue: bool = False
    websocket: bool = False
    # The client's own forwarding values, used only from trusted peers.
    forwarded_for: bytes | None = None
    forwarded_proto: bytes | None = None
    forwarded_host: bytes | None = None
    forwarded: bytes | None = None
    via: bytes | None = None
    request_id: bytes | None = None

    FIELDS = (
        "method", "target", "version", "host", "headers", "content_length", "chunked",
        "keep_alive", "expect_continue", "websocket", "forwarded_for", "forwarded_proto",
        "forwarded_host", "forwarded", "via", "request_id",
    )  # fmt: skip

    def __init__(
        self, method: bytes, target: bytes, host: bytes, headers: list[tuple[bytes, bytes]]
    ) -> None:
        self.method = method
        self.target = target  # origin-form (or ``*``), what is sent upstream
        self.host = host
        self.headers = headers

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RequestHead):
            return NotImplemented
        return all(getattr(self, f) == getattr(other, f) for f in self.FIELDS)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        fields = ", ".join(f"{f}={getattr(self, f)!r}" for f in self.FIELDS)
        return f"RequestHead({fields})"

    @property
    def has_body(self) -> bool:
        return self.chunked or bool(self.content_length)

    @property
    def idempotent(self) -> bool:
        return self.method in IDEMPOTENT

    @property
    def path(self) -> str:
        """The target as text for routing (bytes outside ASCII were refused by the parser)."""
        return self.target.decode("latin-1")


def _by_first_letter(names: Iterable[bytes]) -> bytes:
    groups: dict[bytes, list[bytes]] = {}
    for name in sorted(names):
        groups.setdefault(name[:1], []).append(re.escape(name[1:]))
    return b"|".join(
        re.escape(first) + b"(?:" + b"|".join(sorted(rest, key=len, reverse=True)) + b")"
        for first, rest in groups.items()
    )


_CONNECTION_OPTIONS = frozenset({b"close", b"keep-alive", b"upgrade"})


def _tokens(value: bytes) -> list[bytes]:
    return [t for t in (p.strip().lower() for p in value.split(b",")) if t]


def validate_request(
    method: bytes,
    url: bytes,
    version: str,
    raw_headers: list[tuple[bytes, bytes]],
    keep_alive: bool,
    limits: Limits,
) -> RequestHead:
    """Check a parsed request head against the rules at the top of this module."""
    if version == "1.1":
        vbytes = b"1.1"
    elif version == "1.0":
        vbytes = b"1.0"
    else:
        raise HttpError(505, f"HTTP/{version} is not supported")
    if method == b"CONNECT":
        raise HttpError(501, "CONNECT is not supported")

    hosts: list[bytes] = []
    content_length: int | None = None
    te: list[bytes] = []
    connection: list[bytes] = []
    upgrade: bytes | None = None
    expect: bytes | None = None
    xff: list[bytes] = []
    xfp = xfh = fwd = via = rid = None
    kept: list[tuple[bytes, bytes]] = []
    append = kept.append
    for name, value in raw_headers:
        lname = name.lower()
        if lname not in _DROP_FROM_REQUEST:
            if b"_" not in name:
                append((name, value))
        elif lname == b"host":
            hosts.append(value)
        elif lname == b"content-length":
            # llhttp accepts only digits here and refuses a second Content-Length.
            content_length = int(value)
        elif lname == b"transfer-encoding":
            te.append(value)
        elif lname == b"connection":
            connection.extend(_tokens(value))
        elif lname == b"upgrade":
            upgrade = value
        elif lname == b"expect":
            expect = value
        elif lname == b"x-forwarded-for":
            xff.append(value)
        elif lname == b"x-forwarded-proto":
            xfp = value
        elif lname == b"x-forwarded-host":
            xfh = value
        elif lname == b"forwarded":
            fwd = value if fwd is None else fwd + b", " + value
        elif lname == b"via":
            via = value if via is None else via + b", " + value
        elif lname == b"x-request-id":
            rid = value

    if not hosts:
        raise HttpError(400, "missing Host header")
    if len(hosts) > 1:
        raise HttpError(400, "more than one Host header")
    host = hosts[0].strip()
    if not host or host.translate(None, _VISIBLE_ASCII):  # empty, or bytes left: not visible
        raise HttpError(400, "invalid Host header")

    chunked = False
    if te:
        if len(te) > 1:
            raise HttpError(400, "more than one Transfer-Encoding header")
        if vbytes == b"1.0":
            raise HttpError(400, "Transfer-Encoding in an HTTP/1.0 request")
        if content_length is not None:
            raise HttpError(400, "both Content-Length and Transfer-Encoding")
        if te[0].strip().lower() != b"chunked":
            raise HttpError(501, "only the chunked transfer coding is supported")
        chunked = True
    if content_length is not None and content_length > limits.max_body:
        raise HttpError(413, f"body over {limits.max_body} bytes")

    expect_continue = False
    if expect is not None:
        if expect.strip().lower() != b"100-continue":
            raise HttpError(417, "only Expect: 100-continue is supported")
        expect_continue = vbytes == b"1.1" and (chunked or bool(content_length))

    target = url
    if url[:1] != b"/":
        if url == b"*":
            if method != b"OPTIONS":
                raise HttpError(400, "asterisk-form is only for OPTIONS")
        else:
            m = _ABSOLUTE.fullmatch(url)
            if m is None:
                raise HttpError(400, "request target is not origin-form or absolute-form")
            if m.group(2) != host:
                raise HttpError(400, "absolute-form authority differs from Host")
            target = m.group(3) or b"/"
            if target[:1] != b"/":
                target = b"/" + target

    websocket = False
    if upgrade is not None and b"upgrade" in connection:
        if b"websocket" in _tokens(upgrade) and method == b"GET" and vbytes == b"1.1":
            if chunked or content_length:
                raise HttpError(400, "a WebSocket upgrade request cannot carry a body")
            websocket = True
        else:
            # Any other protocol switch (h2c, ...) is declined; the request is served as is,
            # and the connection closes after it because the parser stopped at the upgrade.
            keep_alive = False

    if connection:
        listed = {t for t in connection if t not in (b"close", b"keep-alive", b"upgrade")}
        if listed:
            kept = [(n, v) for n, v in kept if n.lower() not in listed]

    head = RequestHead(method, target, host, kept)
    # Only what differs from the class defaults is stored (see RequestHead).
    if vbytes != b"1.1":
        head.version = vbytes
    if content_length is not None:
        head.content_length = content_length
    if chunked:
        head.chunked = True
    if not keep_alive:
        head.keep_alive = False
    if expect_continue:
        head.expect_continue = True
    if websocket:
        head.websocket = True
    if xff:
        head.forwarded_for = b", ".join(xff)
    if xfp is not None:
        head.forwarded_proto = xfp
    if xfh is not None:
        head.forwarded_host = xfh
    if fwd is not None:
        head.forwarded = fwd
    if via is not None:
        head.via = via
    if rid is not None:
        head.request_id = rid
    return head


_ID_PREFIX = os.urandom(8).hex().encode()
_id_counter = itertools.count(1)


def new_request_id() -> bytes:
    """32 hex digits: random per process, then a counter (unique without a syscall each)."""
    return b"%b%016x" % (_ID_PREFIX, next(_id_counter))


def request_head_for_upstream(
    head: RequestHead,
    client_ip: bytes,
    scheme: bytes,
    trusted_peer: bool,
    via_name: bytes,
    request_id: bytes | None = None,
) -> bytes:
    """The request head sent upstream: rebuilt from validated fields, never the raw bytes."""
    parts = [head.method, b" ", head.target, b" HTTP/1.1\r\nHost: ", head.host, b"\r\n"]
    for name, value in head.headers:
        parts += (name, b": ", value, b"\r\n")
    if head.chunked:
        parts.append(b"Transfer-Encoding: chunked\r\n")
    elif head.content_length is not None:
        parts += (b"Content-Length: ", b"%d" % head.content_length, b"\r\n")
    if head.websocket:
        parts.append(b"Connection: Upgrade\r\nUpgrade: websocket\r\n")
    rid = head.request_id if trusted_peer else None  # a client's own id is never believed
    if rid is None or not _REQUEST_ID.fullmatch(rid):
        rid = request_id or b"%b%016x" % (_ID_PREFIX, next(_id_counter))  # new_request_id()
    if not trusted_peer:
        # The usual case in one step: the client's own forwarding fields are not kept.
        parts += (
            b"X-Forwarded-For: ",
            client_ip,
            b"\r\nX-Forwarded-Proto: ",
            scheme,
            b"\r\nX-Forwarded-Host: ",
            head.host,
            b"\r\nX-Request-ID: ",
            rid,
            b"\r\n",
        )
    else:
        if head.forwarded_for:
            parts += (b"X-Forwarded-For: ", head.forwarded_for, b", ", client_ip, b"\r\n")
        else:
            parts += (b"X-Forwarded-For: ", client_ip, b"\r\n")
        proto = head.forwarded_proto or scheme
        fhost = head.forwarded_host or head.host
        parts += (b"X-Forwarded-Proto: ", proto, b"\r\nX-Forwarded-Host: ", fhost, b"\r\n")
        if head.forwarded:
            parts += (b"Forwarded: ", head.forwarded, b"\r\n")
        parts += (b"X-Request-ID: ", rid, b"\r\n")
    if head.via:
        parts += (b"Via: ", head.via, b", 1.1 ", via_name, b"\r\n\r\n")
    else:
        parts += (b"Via: 1.1 ", via_name, b"\r\n\r\n")
    return b"".join(parts)


# The fast lane: a request head in the one shape most clients send is checked and rebuilt by
# one regex match instead of a parser callback per field. Accepted: GET or HEAD, origin-form,
# HTTP/1.1, each field ``Name: value`` (a name without ``_``, one space, no whitespace at the
# ends, visible ASCII),
# exactly one Host, no field this proxy drops or rewrites except ``Connection: keep-alive``,
# and nothing after the empty line. Such a head is valid under every rule above, and its
# rebuilt form keeps each field line byte for byte, so the rebuild is the matched slices
# joined. Anything else goes the long way (parser, validate_request); the answer is the same
# (tests/proxy/test_fast_lane.py checks both lanes agree).
#
# The pattern runs over a lower-cased copy (case-sensitive literals are much cheaper than
# case-insensitive ones), the bytes kept come from the original by the match's spans; the
# names set aside are grouped by first letter, so most lines fail the look-ahead at once;
# possessive repeats (*+) leave nothing to backtrack into.
_PLAIN_LINE = (
    rb"(?!(?:" + _by_first_letter(_DROP_FROM_REQUEST) + rb"):)"
    rb"[!#$%&'*+.^`|~0-9a-z-]++: [!-~](?:[ -~]*+(?<! ))?\r\n"
)
_KEEP_ALIVE_LINE = rb"connection: keep-alive\r\n"
_SIMPLE_REQUEST = re.compile(
    rb"(?:get|head) (/[!-~]*+) http/1\.1\r\n"
    rb"((?:" + _PLAIN_LINE + rb"|(" + _KEEP_ALIVE_LINE + rb"))*+)"
    rb"host: ([!-~]++)\r\n"
    rb"((?:" + _PLAIN_LINE + rb"|(" + _KEEP_ALIVE_LINE + rb"))*+)"
    rb"\r\n"
)
_PLAIN_FIELD = re.compile(rb"([^:\r\n]+): ([^\r\n]*)\r\n")
# Whole lines only (each slice it runs over starts at a line start): "Content-LenConnection:
# keep-alive" is a field of its own, and cutting a piece out of it would splice two lines.
_KEEP_ALIVE_FIELD = re.compile(rb"(?im)^" + _KEEP_ALIVE_LINE)


def simple_request(
    data: bytes,
    limits: Limits,
    client_ip: bytes,
    scheme: bytes,
    via_name: bytes,
    request_id: bytes | None = None,
) -> tuple[RequestHead, bytes] | None:
    """``data`` as one complete request head of the fast lane's shape (see above), within
    ``limits``, from an untrusted peer: its ``RequestHead`` and the upstream head, equal to
    what ``validate_request`` and ``request_head_for_upstream`` give for it. Else None."""
    size = len(data)
    if size > limits.max_request_line or size > limits.max_header_bytes:
        return None
    m = _SIMPLE_REQUEST.fullmatch(data.lower())
    if m is None:
        return None
    # A field line takes at least 6 bytes ("a: b\r\n"): only a long head can have too many.
    if size > 6 * limits.max_header_count and data.count(b"\n") > limits.max_header_count + 2:
        return None
    _, (t0, t1), (b0, b1), ka_before, (h0, h1), (a0, a1), ka_after = m.regs
    method = data[: t0 - 1]
    if (method != b"GET" and method != b"HEAD") or data[t1 : t1 + 11] != b" HTTP/1.1\r\n":
        return None  # the method and version are case-sensitive
    target = data[t0:t1]
    host = data[h0:h1]
    before = data[b0:b1]
    if ka_before[0] >= 0:
        before = _KEEP_ALIVE_FIELD.sub(b"", before)
    if a1 > a0:
        after = data[a0:a1]
        if ka_after[0] >= 0:
            after = _KEEP_ALIVE_FIELD.sub(b"", after)
        fields = before + after
    else:
        fields = before
    rid = request_id or b"%b%016x" % (_ID_PREFIX, next(_id_counter))  # new_request_id()
    upstream = b"".join(
        (
            method,
            b" ",
            target,
            b" HTTP/1.1\r\nHost: ",
            host,
            b"\r\n",
            fields,
            b"X-Forwarded-For: ",
            client_ip,
            b"\r\nX-Forwarded-Proto: ",
            scheme,
            b"\r\nX-Forwarded-Host: ",
            host,
            b"\r\nX-Request-ID: ",
            rid,
            b"\r\nVia: 1.1 ",
            via_name,
            b"\r\n\r\n",
        )
    )
    headers = _PLAIN_FIELD.findall(fields) if fields else []
    return RequestHead(method, target, host, headers), upstream


# How a response body is framed towards the client.
LENGTH, CHUNKED, CLOSE, NONE = 0, 1, 2, 3


@dataclass(slots=True)
class ResponseHead:
    head: bytes  # the bytes to send to the client
    framing: int  # LENGTH, CHUNKED, CLOSE or NONE
    keep_alive: bool  # the client connection stays open after this response
    upstream_framed: bool = True  # the upstream sent a length or chunks (not close-delimited)


# Fields of a response that are not passed through as they are: framing, hop-by-hop.
def _passes_through(specials: list[tuple[bytes, bytes]]) -> bool:
    """A Content-Length and at most ``Connection: keep-alive``: nothing to rewrite."""
    length = False
    for name, value in specials:
        if name == b"content-length":
            length = True
        elif name != b"connection" or value.strip(b" \t") != b"keep-alive":
            return False
    return length


# Matched on a lower-cased copy (a case-sensitive pattern with a literal start is twice as
# fast); llhttp allows no whitespace before the colon, so ``name:`` is exact.
_SPECIAL_NAMES = (
    rb"content-length|connection|transfer-encoding|keep-alive|proxy-connection|te|trailer"
    rb"|upgrade|proxy-authenticate|proxy-authorization"
)

# One complete, well-formed HTTP/1.1 response head (status line, field lines, the empty line)
# with exactly one Content-Length, perhaps ``Connection: keep-alive``, and no other field that
# is not passed through as it is (see pass_through_response): one regex pass over a lower-cased
# copy (as _SIMPLE_REQUEST below: literal names grouped by first letter, possessive repeats).
_TOKEN = rb"[!#$%&'*+.^_`|~0-9a-z-]++"
_FIELD_VALUE = rb"[\t \x21-\x7e\x80-\xff]*+"
_SPECIAL_LINE_START = rb"(?!(?:" + _by_first_letter(_SPECIAL_NAMES.split(b"|")) + rb"):)"
_PASS_THROUGH_HEAD = re.compile(
    rb"http/1\.1 (?!204|304)[2-5][0-9][0-9](?: " + _FIELD_VALUE + rb")?\r\n"
    rb"(?:" + _SPECIAL_LINE_START + _TOKEN + rb":" + _FIELD_VALUE + rb"\r\n"
    rb"|connection:[ \t]*+keep-alive[ \t]*+\r\n)*+"
    rb"content-length:[ \t]*+([0-9]++)[ \t]*+\r\n"
    rb"(?:" + _SPECIAL_LINE_START + _TOKEN + rb":" + _FIELD_VALUE + rb"\r\n"
    rb"|connection:[ \t]*+keep-alive[ \t]*+\r\n)*+"
    rb"\r\n"
)


def pass_through_response(data: bytes, extra: tuple[tuple[bytes, bytes], ...]) -> bytes | None:
    """The bytes for the client when ``data`` is exactly one complete, well-formed HTTP/1.1
    response with a body framed by Content-Length and nothing hop-by-hop but
    ``Connection: keep-alive`` (the usual small response, read in one go); else None, and the
    response goes through the parser. The caller checks that the client speaks HTTP/1.1,
    stays open and did not send HEAD."""
    m = _PASS_THROUGH_HEAD.match(data.lower())
    if m is None or data[:9] != b"HTTP/1.1 ":  # (the pattern saw a lower-cased copy)
        return None
    end = m.end()
    if int(m.group(1)) != len(data) - end:
        return None
    if extra:
        return b"".join((data[: end - 2], _fields(extra), data[end - 2 :]))
    return data


# "Connection: close" in a response head (lower-cased), the line's CRLF before it.
_CLOSE_LINE = re.compile(rb"\r\nconnection:[ \t]*+close[ \t]*+(?=\r\n)")


def pass_through_closing_response(
    data: bytes, extra: tuple[tuple[bytes, bytes], ...]
) -> bytes | None:
    """``pass_through_response`` for a response that says ``Connection: close`` (every
    response of a sync gunicorn worker): the bytes for the client without that line (the
    client's connection stays open; the caller closes the upstream one), or None."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return None
    m = _CLOSE_LINE.search(data[: end + 2].lower())
    if m is None:
        return None
    return pass_through_response(data[: m.start()] + data[m.end() :], extra)


def _fields(fields: tuple[tuple[bytes, bytes], ...]) -> bytes:
    return b"".join(b"%b: %b\r\n" % pair for pair in fields)


_RESPONSE_SPECIAL = re.compile(rb"\r\n(" + _SPECIAL_NAMES + rb"):")
_RESPONSE_SPECIAL_VALUES = re.compile(rb"\r\n(" + _SPECIAL_NAMES + rb"):([^\r]*)")


def response_head_for_client(
    raw_head: bytes,
    extra: tuple[tuple[bytes, bytes], ...],
    *,
    client_version: bytes,
    keep_alive: bool,
    head_request: bool,
    websocket: bool = False,
) -> ResponseHead:
    """Rewrite an upstream response head for the client: hop-by-hop fields out, our framing in.

    ``raw_head`` is the status line and the field lines, each ending in CRLF, without the
    empty line; httptools has already parsed (so validated) these bytes. One regex pass finds
    the few fields that are not passed through as they are; the rest is copied in one slice.

    Bodies are re-framed: a Content-Length passes through; a chunked or close-delimited body
    goes to an HTTP/1.1 client chunked (so the connection can stay open) and to an HTTP/1.0
    client close-delimited.
    """
    eol = raw_head.index(b"\r\n")
    status = int(raw_head[9:12])
    low = raw_head.lower()
    if (
        keep_alive
        and client_version == b"1.1"
        and not head_request
        and not websocket
        and raw_head[:9] == b"HTTP/1.1 "
        and 200 <= status != 204
        and status != 304
        and _passes_through(_RESPONSE_SPECIAL_VALUES.findall(low, eol))
    ):
        # The common response: a length, perhaps "Connection: keep-alive" (the same connection
        # option this hop uses), nothing else hop-by-hop: the head goes out as it came.
        if extra:
            return ResponseHead(raw_head + _fields(extra) + b"\r\n", LENGTH, True, True)
        return ResponseHead(raw_head + b"\r\n", LENGTH, True, True)
    status_line = raw_head[:eol]
    parts = [b"HTTP/1.1", status_line[8:], b"\r\n"]
    content_length: bytes | None = None
    chunked = False
    listed: list[bytes] = []
    pos = eol + 2  # start of the bytes not yet copied
    for m in _RESPONSE_SPECIAL.finditer(low, eol):
        start = m.start() + 2
        if start > pos:
            parts.append(raw_head[pos:start])
        line_end = raw_head.index(b"\r\n", m.end())
        pos = line_end + 2
        name = m.group(1)
        if name == b"content-length":
            content_length = raw_head[m.end() : line_end].strip(b" \t")
        elif name == b"transfer-encoding":
            chunked = True
        elif name == b"connection":
            value = raw_head[m.end() : line_end].strip(b" \t").lower()
            if value not in _CONNECTION_OPTIONS:  # the usual single "keep-alive" or "close"
                listed += [t for t in _tokens(value) if t not in _CONNECTION_OPTIONS]
    if pos < len(raw_head):
        parts.append(raw_head[pos:])
    if listed:
        # Fields named in Connection are hop-by-hop too (RFC 9110 7.6.1); rare, so slow.
        names = b"|".join(re.escape(t) for t in listed)
        drop = re.compile(rb"^(?:" + names + rb")[ \t]*:[^\r\n]*\r\n", re.I | re.M)
        body = drop.sub(b"", b"".join(parts[3:]))
        parts = [*parts[:3], body]
    for name, value in extra:
        parts += (name, b": ", value, b"\r\n")
    framed = chunked or content_length is not None
    if websocket:
        parts.append(b"Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
        return ResponseHead(b"".join(parts), NONE, False, framed)
    if head_request or status < 200 or status == 204 or status == 304:
        framing = NONE
        if content_length is not None and status >= 200 and status != 204:
            parts += (b"Content-Length: ", content_length, b"\r\n")
    elif content_length is not None:
        framing = LENGTH
        parts += (b"Content-Length: ", content_length, b"\r\n")
    elif client_version == b"1.1":
        framing = CHUNKED
        parts.append(b"Transfer-Encoding: chunked\r\n")
    else:
        framing = CLOSE
        keep_alive = False
    if status < 200:
        parts.append(b"\r\n")
    elif not keep_alive:
        parts.append(b"Connection: close\r\n\r\n")
    elif client_version == b"1.0":
        parts.append(b"Connection: keep-alive\r\n\r\n")
    else:
        parts.append(b"\r\n")
    return ResponseHead(b"".join(parts), framing, keep_alive, framed)


def _reason(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b"Unknown"


def render_answer(
    status: int,
    body: bytes,
    *,
    content_type: bytes = b"text/plain; charset=utf-8",
    headers: tuple[tuple[bytes, bytes], ...] = (),
    keep_alive: bool = True,
    head_request: bool = False,
    content_length: int | None = None,
) -> bytes:
    """A complete response produced by the proxy itself.

    ``content_length``: the length to announce when it is not ``len(body)`` (a body sent
    separately from a file, or none at all: HEAD, 304)."""
    length = len(body) if content_length is None else content_length
    parts = [b"HTTP/1.1 %d " % status, _reason(status), b"\r\n"]
    parts += (b"Content-Type: ", content_type, b"\r\nContent-Length: %d\r\n" % length)
    for name, value in headers:
        parts += (name, b": ", value, b"\r\n")
    parts.append(b"\r\n" if keep_alive else b"Connection: close\r\n\r\n")
    if not head_request:
        parts.append(body)
    return b"".join(parts)


def error_page(
    status: int,
    detail: str = "",
    *,
    keep_alive: bool = False,
    retry_after: int | None = None,
    headers: tuple[tuple[bytes, bytes], ...] = (),
    head_request: bool = False,
) -> bytes:
    """A small plain-text error page: the status line, and the reason when it helps."""
    text = f"{status} {_reason(status).decode()}\n"
    if detail:
        text += detail + "\n"
    extra = headers
    if retry_after is not None:
        extra = ((b"Retry-After", b"%d" % retry_after), *headers)
    return render_answer(
        status, text.encode(), headers=extra, keep_alive=keep_alive, head_request=head_request
    )


# --- cold-path decisions of the engine (rules R, K and T at the top of this file) ----------------


class Failure(enum.Enum):
    """What went wrong with an exchange's upstream, and at which point."""

    CONNECT = "connect"  # no connection was made: nothing of the request left the proxy
    CLOSED_UNANSWERED = "closed unanswered"  # closed after the request went out, no byte back
    CLOSED_ANSWERING = "closed answering"  # closed after some bytes of an answer
    INVALID = "invalid"  # the response is malformed
    TIMEOUT = "timeout"  # no (more) response in time


def may_retry(
    head: RequestHead,
    failure: Failure,
    *,
    response_started: bool,
    attempt: int,
    max_attempts: int,
    candidates: int,
) -> bool:
    """Rule R: may the request go to the next candidate after ``failure``? ``attempt`` is the
    number of attempts made so far (the index of the next one)."""
    if response_started or attempt >= min(max_attempts, max(candidates, 2)):
        return False
    if failure is Failure.CONNECT:
        return True
    if failure is Failure.CLOSED_UNANSWERED:
        return head.idempotent and not head.has_body
    return False


def keep_client(*, asked: bool, request_done: bool, closing: bool, error_status: int = 0) -> bool:
    """Rule K, client side: may the client connection carry another request after this answer?
    ``asked``: the request asked for keep-alive and is not a WebSocket upgrade; ``error_status``:
    the status of an error page of ours (0 for any other answer)."""
    return asked and request_done and not closing and error_status < 500


def ends_at_head(method: bytes, status: int) -> bool:
    """A response the engine ends at its head: to HEAD, with a status that could carry a body."""
    return method == b"HEAD" and status >= 200 and status != 204 and status != 304


def reuse_upstream(*, keep_alive: bool, request_done: bool, method: bytes, status: int) -> bool:
    """Rule K, upstream side: may the upstream connection go back to its pool? ``keep_alive``:
    the upstream's response did not end the connection (llhttp's ``should_keep_alive``)."""
    return keep_alive and request_done and not ends_at_head(method, status)


class ClientState(enum.IntEnum):
    """Where a client connection is."""

    IDLE = 0  # between requests (keep-alive)
    HEAD = 1  # receiving a request head (a new connection owes one)
    BUSY = 2  # an exchange is under way
    TUNNEL = 3  # a WebSocket tunnel
    LINGER = 4  # closing: half-closed after a refusal, or closed by us
    CLOSED = 5  # the transport is gone


class Timer(enum.IntEnum):
    """The timer a connection runs (rule T); the value is the index in ``timer_seconds``."""

    NONE = 0
    HEADER = 1
    IDLE = 2
    BODY = 3
    LINGER = 4
    FIRST_BYTE = 5
    READ = 6


LINGER_SECONDS = 2.0  # how long a refused client may go on sending before the close
# Rule T for a client connection, by state (a BUSY connection reading a body runs BODY).
_CLIENT_TIMERS = (Timer.IDLE, Timer.HEADER, Timer.NONE, Timer.NONE, Timer.LINGER, Timer.NONE)


def client_timer(state: ClientState | int, reading_body: bool = False) -> Timer:
    """Rule T: the timer of a client connection in ``state`` (a ``ClientState`` or its value)."""
    if state == ClientState.BUSY and reading_body:
        return Timer.BODY
    return _CLIENT_TIMERS[state]


def upstream_timer(*, request_done: bool, got_bytes: bool) -> Timer:
    """Rule T: the timer of an upstream connection carrying an exchange."""
    if not request_done:
        return Timer.NONE
    return Timer.READ if got_bytes else Timer.FIRST_BYTE


def timer_seconds(
    *, header_timeout: float, idle_timeout: float, first_byte_timeout: float
) -> tuple[float, ...]:
    """The length of each ``Timer``, indexed by it (rule T)."""
    return (
        0.0,  # NONE
        header_timeout,  # HEADER
        idle_timeout,  # IDLE
        idle_timeout,  # BODY: between two reads of the body
        LINGER_SECONDS,  # LINGER
        first_byte_timeout,  # FIRST_BYTE
        idle_timeout,  # READ: between two reads of the response
    )
