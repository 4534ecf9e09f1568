"""Malformed and ambiguous requests: each gets its documented status and the connection closes,
and the recording origin behind the engine receives not one byte."""

from __future__ import annotations

import pytest

from tests.proxy.support import closed_by_peer, connect, read_response

H = b"Host: app.test\r\n"
POST = b"POST / HTTP/1.1\r\n" + H
CHUNKED = b"Transfer-Encoding: chunked\r\n"
MAX_BODY = 1000

CASES: list[tuple[str, bytes, int]] = [
    # request smuggling: CL.TE, TE.CL, TE.TE
    ("cl-te", POST + b"Content-Length: 6\r\n" + CHUNKED + b"\r\n0\r\n\r\nX", 400),
    ("te-cl", POST + CHUNKED + b"Content-Length: 6\r\n\r\n0\r\n\r\nX", 400),
    ("te-te-two-fields", POST + CHUNKED + b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    ("te-te-identity", POST + CHUNKED + b"Transfer-Encoding: identity\r\n\r\n0\r\n\r\n", 400),
    ("te-te-cased-twice", POST + CHUNKED + b"transfer-encoding: cow\r\n\r\n0\r\n\r\n", 400),
    ("te-xchunked", POST + b"Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", 501),
    ("te-chunked-then-gzip", POST + b"Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n", 400),
    ("te-gzip-then-chunked", POST + b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501),
    ("te-gzip-only", POST + b"Transfer-Encoding: gzip\r\n\r\n", 501),
    ("te-identity", POST + b"Transfer-Encoding: identity\r\n\r\n", 501),
    ("te-space-before-colon", POST + b"Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n", 400),
    ("te-vertical-tab", POST + b"Transfer-Encoding: \x0bchunked\r\n\r\n0\r\n\r\n", 400),
    ("te-obs-fold", POST + b"Transfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n", 400),
    ("te-http10", b"POST / HTTP/1.0\r\n" + H + CHUNKED + b"\r\n0\r\n\r\n", 400),
    ("te-cl-http10", b"POST / HTTP/1.0\r\n" + H + CHUNKED + b"Content-Length: 3\r\n\r\n", 400),
    # Content-Length
    ("cl-duplicate-same", POST + b"Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc", 400),
    ("cl-duplicate-differ", POST + b"Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400),
    ("cl-list", POST + b"Content-Length: 3, 3\r\n\r\nabc", 400),
    ("cl-plus", POST + b"Content-Length: +3\r\n\r\nabc", 400),
    ("cl-negative", POST + b"Content-Length: -1\r\n\r\n", 400),
    ("cl-hex", POST + b"Content-Length: 0x3\r\n\r\nabc", 400),
    ("cl-inner-space", POST + b"Content-Length: 3 3\r\n\r\nabc", 400),
    ("cl-trailing-garbage", POST + b"Content-Length: 3abc\r\n\r\nabc", 400),
    ("cl-overflow", POST + b"Content-Length: 99999999999999999999999\r\n\r\n", 400),
    ("cl-over-limit", POST + b"Content-Length: %d\r\n\r\n" % (MAX_BODY + 1), 413),
    ("cl-empty", POST + b"Content-Length: \r\n\r\n", 400),
    # line endings, folding, control characters
    ("bare-lf-everywhere", b"GET / HTTP/1.1\nHost: app.test\n\n", 400),
    ("bare-lf-in-header", b"GET / HTTP/1.1\r\nHost: app.test\nX: y\r\n\r\n", 400),
    ("bare-cr-in-header", b"GET / HTTP/1.1\r\nHost: app.test\rX: y\r\n\r\n", 400),
    ("bare-lf-after-request-line", b"GET / HTTP/1.1\n" + H + b"\r\n", 400),
    ("obs-fold", b"GET / HTTP/1.1\r\n" + H + b"X: a\r\n b\r\n\r\n", 400),
    ("obs-fold-tab", b"GET / HTTP/1.1\r\n" + H + b"X: a\r\n\tb\r\n\r\n", 400),
    ("leading-space-first-header", b"GET / HTTP/1.1\r\n Host: app.test\r\n\r\n", 400),
    ("nul-in-value", b"GET / HTTP/1.1\r\n" + H + b"X: a\x00b\r\n\r\n", 400),
    ("ctl-in-value", b"GET / HTTP/1.1\r\n" + H + b"X: a\x01b\r\n\r\n", 400),
    ("del-in-value", b"GET / HTTP/1.1\r\n" + H + b"X: a\x7fb\r\n\r\n", 400),
    ("esc-in-value", b"GET / HTTP/1.1\r\n" + H + b"X: a\x1bb\r\n\r\n", 400),
    ("ctl-in-target", b"GET /a\x01b HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("del-in-target", b"GET /a\x7fb HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("space-in-target", b"GET /a b HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("tab-in-target", b"GET /a\tb HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("high-byte-in-target", b"GET /a\xffb HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("nul-in-method", b"G\x00ET / HTTP/1.1\r\n" + H + b"\r\n", 400),
    # field names
    ("space-in-name", b"GET / HTTP/1.1\r\n" + H + b"X Y: z\r\n\r\n", 400),
    ("space-before-colon", b"GET / HTTP/1.1\r\n" + H + b"X : z\r\n\r\n", 400),
    ("empty-name", b"GET / HTTP/1.1\r\n" + H + b": z\r\n\r\n", 400),
    ("bad-char-in-name", b"GET / HTTP/1.1\r\n" + H + b"X(: z\r\n\r\n", 400),
    ("line-without-colon", b"GET / HTTP/1.1\r\n" + H + b"Garbage\r\n\r\n", 400),
    # Host
    ("host-missing", b"GET / HTTP/1.1\r\nX: y\r\n\r\n", 400),
    ("host-missing-http10", b"GET / HTTP/1.0\r\n\r\n", 400),
    ("host-twice-same", b"GET / HTTP/1.1\r\n" + H + H + b"\r\n", 400),
    ("host-twice-differ", b"GET / HTTP/1.1\r\n" + H + b"Host: other.test\r\n\r\n", 400),
    ("host-empty", b"GET / HTTP/1.1\r\nHost: \r\n\r\n", 400),
    ("host-inner-space", b"GET / HTTP/1.1\r\nHost: app test\r\n\r\n", 400),
    ("host-high-byte", b"GET / HTTP/1.1\r\nHost: app\xff.test\r\n\r\n", 400),
    # versions
    ("http09", b"GET /\r\n\r\n", 505),
    ("http20", b"GET / HTTP/2.0\r\n" + H + b"\r\n", 505),
    ("http12", b"GET / HTTP/1.2\r\n" + H + b"\r\n", 505),
    ("http30", b"GET / HTTP/3.0\r\n" + H + b"\r\n", 505),
    ("version-lowercase", b"GET / http/1.1\r\n" + H + b"\r\n", 400),
    ("version-missing-minor", b"GET / HTTP/1\r\n" + H + b"\r\n", 400),
    # methods and request-target forms
    ("method-unknown", b"FOO / HTTP/1.1\r\n" + H + b"\r\n", 501),
    ("method-lowercase", b"get / HTTP/1.1\r\n" + H + b"\r\n", 501),
    ("connect", b"CONNECT app.test:443 HTTP/1.1\r\nHost: app.test:443\r\n\r\n", 501),
    ("absolute-form-other-host", b"GET http://other.test/ HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("absolute-form-ftp", b"GET ftp://app.test/ HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("asterisk-with-get", b"GET * HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("authority-form-with-get", b"GET app.test:80 HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("request-line-only-method", b"GET\r\n" + H + b"\r\n", 400),
    # sizes
    ("request-line-too-long", b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n" + H + b"\r\n", 414),
    ("header-too-large", b"GET / HTTP/1.1\r\n" + H + b"X: " + b"a" * 33000 + b"\r\n\r\n", 431),
    ("headers-too-many", b"GET / HTTP/1.1\r\n" + H + b"X: y\r\n" * 101 + b"\r\n", 431),
    ("header-never-ends", b"GET / HTTP/1.1\r\n" + H + b"X: " + b"a" * 50000, 431),
    ("request-line-never-ends", b"GET /" + b"a" * 50000, 414),
    # Expect, upgrade
    ("expect-unknown", POST + b"Expect: 200-ok\r\nContent-Length: 3\r\n\r\nabc", 417),
    ("websocket-with-body",
     b"GET / HTTP/1.1\r\n" + H + b"Connection: Upgrade\r\nUpgrade: websocket\r\n"
     b"Content-Length: 3\r\n\r\nabc", 400),
    # chunk anomalies
    ("chunk-size-overflow", POST + CHUNKED + b"\r\nFFFFFFFFFFFFFFFFFFFF\r\n", 400),
    ("chunk-size-negative", POST + CHUNKED + b"\r\n-1\r\n", 400),
    ("chunk-size-0x", POST + CHUNKED + b"\r\n0x3\r\nabc\r\n0\r\n\r\n", 400),
    ("chunk-size-space", POST + CHUNKED + b"\r\n3 \r\nabc\r\n0\r\n\r\n", 400),
    ("chunk-size-empty", POST + CHUNKED + b"\r\n\r\nabc\r\n0\r\n\r\n", 400),
    ("chunk-data-too-long", POST + CHUNKED + b"\r\n3\r\nabcd\r\n0\r\n\r\n", 400),
    ("chunk-bare-lf", POST + CHUNKED + b"\r\n3\nabc\n0\n\n", 400),
    ("chunk-ext-ctl", POST + CHUNKED + b"\r\n3;\x01\r\nabc\r\n0\r\n\r\n", 400),
    ("chunked-over-limit",
     POST + CHUNKED + b"\r\n" + (b"%x\r\n" % 600 + b"a" * 600 + b"\r\n") * 2 + b"0\r\n\r\n", 413),
]  # fmt: skip


def test_the_battery_is_large_enough():
    assert len(CASES) >= 60
    assert len({name for name, _, _ in CASES}) == len(CASES)


@pytest.mark.parametrize(("raw", "status"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_refused_with_status_and_nothing_reaches_the_backend(serve, origin, raw, status):
    proxy = serve(origin, limits=_limits())
    with connect(proxy.port) as sock:
        sock.sendall(raw)
        resp = read_response(sock)
        assert resp.status == status, resp.body
        assert resp.header("Connection") == "close"
        assert closed_by_peer(sock)
    assert origin.received == b""


def test_a_valid_request_on_the_same_setup_does_reach_the_backend(serve, origin):
    # The control for the battery: the same engine and origin do forward good requests.
    proxy = serve(origin, limits=_limits())
    with connect(proxy.port) as sock:
        sock.sendall(POST + CHUNKED + b"\r\n3\r\nabc\r\n0\r\n\r\n")
        assert read_response(sock).status == 200
    assert b"abc" in origin.received


def _limits():
    from proxy.core import Limits

    return Limits(max_body=MAX_BODY)
