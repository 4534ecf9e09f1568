"""The request fast lane (core.simple_request) against the long way (httptools, then
core.validate_request and core.request_head_for_upstream): whatever the fast lane accepts,
the long way accepts too, with the same head and the same bytes upstream."""

from __future__ import annotations

import httptools
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy import core
from proxy.core import HttpError, Limits

CLIENT_IP, SCHEME, VIA, RID = b"203.0.113.7", b"http", b"proxy", b"0123456789abcdef"
DEFAULT_LIMITS = Limits()


class _Collector:
    """The callbacks the engine's client protocol uses, recording one request head."""

    def __init__(self) -> None:
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.complete = 0

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_message_complete(self) -> None:
        self.complete += 1


def long_way(data: bytes, limits: Limits = DEFAULT_LIMITS) -> tuple[core.RequestHead, bytes] | None:
    """What the engine does without the fast lane; None when it refuses the request."""
    seen = _Collector()
    parser = httptools.HttpRequestParser(seen)
    try:
        parser.feed_data(data)
    except httptools.HttpParserError:
        return None
    if seen.complete != 1 or len(seen.headers) > limits.max_header_count:
        return None  # (the field count is the engine's check, in ClientConnection.on_header)
    try:
        head = core.validate_request(
            parser.get_method(),
            seen.url,
            parser.get_http_version(),
            seen.headers,
            parser.should_keep_alive(),
            limits,
        )
    except HttpError:
        return None
    return head, core.request_head_for_upstream(head, CLIENT_IP, SCHEME, False, VIA, RID)


def fast_lane(data: bytes, limits: Limits = DEFAULT_LIMITS):
    return core.simple_request(data, limits, CLIENT_IP, SCHEME, VIA, RID)


WRK = b"GET /small HTTP/1.1\r\nHost: app.bench\r\n\r\n"
BROWSER = (
    b"GET /a/b?x=1&y=%20 HTTP/1.1\r\nHost: App.Example.com:8080\r\n"
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0\r\n"
    b"Accept: text/html,application/xhtml+xml;q=0.9,*/*;q=0.8\r\nAccept-Language: en\r\n"
    b"Connection: keep-alive\r\nCookie: a=b; c=d\r\nUpgrade-Insecure-Requests: 1\r\n\r\n"
)


@pytest.mark.parametrize("data", [WRK, BROWSER, b"HEAD / HTTP/1.1\r\nhost: a\r\nX-A: 1\r\n\r\n"])
def test_it_takes_the_usual_requests_and_agrees_with_the_long_way(data):
    fast = fast_lane(data)
    assert fast is not None
    assert fast == long_way(data)


def test_the_rebuilt_head_drops_connection_and_adds_forwarding_fields():
    head, upstream = fast_lane(BROWSER)
    assert head.host == b"App.Example.com:8080" and head.keep_alive
    assert b"Connection" not in upstream
    assert upstream.endswith(
        b"Upgrade-Insecure-Requests: 1\r\nX-Forwarded-For: 203.0.113.7\r\n"
        b"X-Forwarded-Proto: http\r\nX-Forwarded-Host: App.Example.com:8080\r\n"
        b"X-Request-ID: 0123456789abcdef\r\nVia: 1.1 proxy\r\n\r\n"
    )


@pytest.mark.parametrize(
    "data",
    [
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",  # not GET or HEAD
        b"GET / HTTP/1.0\r\nHost: a\r\n\r\n",  # HTTP/1.0: keep-alive rules differ
        b"GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n",  # absolute-form
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",  # two Hosts: the long way refuses
        b"GET / HTTP/1.1\r\nX-A: 1\r\n\r\n",  # no Host: the long way refuses
        b"GET / HTTP/1.1\r\nHost: a\r\nX-A:  1\r\n\r\n",  # not one space after the colon
        b"GET / HTTP/1.1\r\nHost: a\r\nX-A: 1 \r\n\r\n",  # trailing whitespace
        b"GET / HTTP/1.1\r\nHost: a\r\nX-A: \t1\r\n\r\n",  # a tab
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, X-A\r\nX-A: 1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n",  # rewritten by us
        b"GET / HTTP/1.1\r\nHost: a\r\nX-Request-ID: abc\r\n\r\n",  # replaced by the long way
        b"GET / HTTP/1.1\r\nHost: a\r\nSCRIPT_NAME: /x\r\n\r\n",  # a name with "_": dropped
        b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",  # pipelined
        b"GET / HTTP/1.1\r\nHost: a\r\n",  # not complete
        b"GET / HTTP/1.1\nHost: a\n\n",  # bare LF
        b"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",  # obs-fold
        b"GET / HTTP/1.1\r\nHost: a\r\nX A: 1\r\n\r\n",  # not a token
        b"GET /\x7f HTTP/1.1\r\nHost: a\r\n\r\n",  # control character in the target
    ],
)
def test_anything_else_goes_the_long_way(data):
    assert fast_lane(data) is None


def test_a_keep_alive_field_is_dropped_only_as_a_whole_line():
    # Cutting "Connection: keep-alive\r\n" out of other lines would splice them into fields
    # the head never had (a Content-Length, a second Host): request smuggling.
    data = (
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\n"
        b"Content-LenConnection: keep-alive\r\ngth: 40\r\n"
        b"HoConnection: keep-alive\r\nst: evil\r\n\r\n"
    )
    head, upstream = fast_lane(data)
    assert (head, upstream) == long_way(data)
    assert b"\r\nContent-Length" not in upstream and upstream.count(b"\r\nHost:") == 1


def test_both_lanes_drop_a_field_whose_name_contains_an_underscore():
    data = b"GET /app HTTP/1.1\r\nHost: a\r\nSCRIPT_NAME: /x\r\nPath_Info: /y\r\nX-A: 1\r\n\r\n"
    assert fast_lane(data) is None  # the long way decides, so there is one rule
    head, _ = long_way(data)
    assert head.headers == [(b"X-A", b"1")]
    clean = b"GET /app HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n\r\n"
    assert long_way(data) == (head, fast_lane(clean)[1])


def test_both_lanes_replace_a_request_id_sent_by_an_untrusted_client():
    sent = b"GET / HTTP/1.1\r\nHost: a\r\nX-Request-ID: forged-by-client\r\n\r\n"
    _, upstream = long_way(sent)
    assert b"X-Request-ID: " + RID + b"\r\n" in upstream and b"forged" not in upstream
    _, fast = fast_lane(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    assert fast == upstream


def test_it_leaves_heads_near_the_limits_to_the_long_way():
    many = b"GET / HTTP/1.1\r\nHost: a\r\n" + b"X-A: 1\r\n" * 5 + b"\r\n"
    assert fast_lane(many, Limits(max_header_count=6)) is not None
    assert fast_lane(many, Limits(max_header_count=5)) is None
    assert long_way(many, Limits(max_header_count=5)) is None
    assert fast_lane(WRK, Limits(max_request_line=len(WRK) - 1)) is None


# Requests assembled from parts the fast lane must get right: special field names in any case,
# odd spacing, repeated fields, other methods and versions, bytes outside visible ASCII. Most
# parts are the usual ones, so that a good share of the requests is taken by the fast lane.
_NAMES = st.sampled_from(
    [b"Accept", b"X-A", b"User-Agent", b"Cookie"] * 6
    + [b"Host", b"host", b"HOST", b"Connection", b"connection", b"TE", b"Te", b"Te-X", b"Hostx",
       b"X-Host", b"Keep-Alive", b"Upgrade", b"Via", b"X-Forwarded-For", b"X-Request-Id",
       b"Expect", b"Content-Length", b"Transfer-Encoding", b"Forwarded", b"Proxy-Connection",
       b"Trailer", b"A B", b"", b"Content-LenConnection", b"HoConnection", b"X-Connection",
       b"SCRIPT_NAME", b"X_A", b"Path_Info"]
)  # fmt: skip
_VALUES = st.sampled_from(
    [b"a", b"a b", b"*/*", b"1"] * 6
    + [b"keep-alive", b"Keep-Alive", b"close", b"example.com", b"", b" a", b"a ", b"\ta",
       b"chunked", b"100-continue", b"x\x80y", b"x\x01", b"websocket", b"keep-alive, X-A",
       b"keep-alive\r\ngth: 40", b"keep-alive\r\nst: evil", b"a connection: keep-alive"]
)  # fmt: skip
_SEPS = st.sampled_from([b": "] * 12 + [b":", b":  ", b" : ", b":\t"])
_LINE = st.tuples(_NAMES, _SEPS, _VALUES).map(lambda t: t[0] + t[1] + t[2] + b"\r\n")
_HOST_LINE = st.sampled_from(
    [b"Host: a.example\r\n"] * 6 + [b"host: A.Example:80\r\n", b"Host:  a\r\n", b"Host: \r\n"]
)
_REQUEST_LINE = st.tuples(
    st.sampled_from([b"GET", b"HEAD"] * 4 + [b"POST", b"get", b"OPTIONS"]),
    st.sampled_from(
        [b"/", b"/a?b=c"] * 4 + [b"*", b"http://a/", b"/%41", b"/a#f", b"/\xc3\xa9", b"", b"/ /"]
    ),
    st.sampled_from([b"HTTP/1.1"] * 6 + [b"HTTP/1.0", b"http/1.1", b"HTTP/2.0"]),
).map(lambda t: b" ".join(t) + b"\r\n")


@st.composite
def requests(draw) -> bytes:
    lines = draw(st.lists(_LINE, max_size=6))
    if draw(st.integers(0, 9)) < 8:
        lines.insert(draw(st.integers(0, len(lines))), draw(_HOST_LINE))
    end = draw(st.sampled_from([b"\r\n"] * 6 + [b"", b"\r\nX", b"\n"]))
    return draw(_REQUEST_LINE) + b"".join(lines) + end


@settings(max_examples=3000, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(requests())
def test_whatever_the_fast_lane_takes_the_long_way_takes_the_same(data):
    fast = fast_lane(data)
    if fast is not None:
        assert fast == long_way(data)
