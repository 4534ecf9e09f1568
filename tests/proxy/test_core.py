"""The pure core, called directly."""

from __future__ import annotations

import pytest

from proxy import core
from proxy.core import HttpError, Limits
from proxy.engine import Health, Upstream
from routing.addresses import InvalidAddress


def validate(headers, method=b"GET", url=b"/", version="1.1", keep_alive=True):
    return core.validate_request(method, url, version, headers, keep_alive, Limits())


def test_it_keeps_end_to_end_fields_and_sets_aside_the_rewritten_ones():
    head = validate([(b"Host", b"a"), (b"Accept", b"*/*"), (b"Via", b"1.0 x"), (b"TE", b"t")])
    assert head.headers == [(b"Accept", b"*/*")]
    assert head.via == b"1.0 x"
    assert head.host == b"a"


def test_it_refuses_a_missing_host():
    with pytest.raises(HttpError) as err:
        validate([(b"Accept", b"*/*")])
    assert err.value.status == 400


def test_it_refuses_a_declared_body_over_the_limit_before_reading_it():
    with pytest.raises(HttpError) as err:
        core.validate_request(
            b"POST", b"/", "1.1", [(b"Host", b"a"), (b"Content-Length", b"11")], True,
            Limits(max_body=10),
        )  # fmt: skip
    assert err.value.status == 413


def test_a_declined_upgrade_ends_keep_alive():
    head = validate([(b"Host", b"a"), (b"Connection", b"Upgrade"), (b"Upgrade", b"h2c")])
    assert not head.websocket and not head.keep_alive


def test_the_upstream_head_is_rebuilt_from_fields():
    head = validate([(b"Host", b"a"), (b"X-A", b"1"), (b"Content-Length", b"3")], method=b"PUT")
    out = core.request_head_for_upstream(head, b"10.0.0.1", b"https", False, b"p", b"rid")
    assert out == (
        b"PUT / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\nContent-Length: 3\r\n"
        b"X-Forwarded-For: 10.0.0.1\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: a\r\n"
        b"X-Request-ID: rid\r\nVia: 1.1 p\r\n\r\n"
    )


def test_a_malformed_request_id_is_replaced():
    head = validate([(b"Host", b"a"), (b"X-Request-ID", b"bad id\x80")])
    out = core.request_head_for_upstream(head, b"1.1.1.1", b"http", False, b"p", b"fresh")
    assert b"X-Request-ID: fresh\r\n" in out


def test_a_response_without_length_is_chunked_for_http11_and_closed_for_http10():
    raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
    for version, framing, keep in ((b"1.1", core.CHUNKED, True), (b"1.0", core.CLOSE, False)):
        rh = core.response_head_for_client(
            raw, (), client_version=version, keep_alive=True, head_request=False
        )
        assert (rh.framing, rh.keep_alive) == (framing, keep)


def test_response_rewriting_drops_hop_by_hop_fields_and_those_named_in_connection():
    raw = (
        b"HTTP/1.0 200 Fine\r\nServer: s\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\n"
        b"Keep-Alive: timeout=5\r\nContent-Length: 2\r\nX-Kept: 2\r\n"
    )
    rh = core.response_head_for_client(
        raw, ((b"X-Backend", b"b1"),), client_version=b"1.1", keep_alive=True, head_request=False
    )
    assert rh.head == (
        b"HTTP/1.1 200 Fine\r\nServer: s\r\nX-Kept: 2\r\nX-Backend: b1\r\nContent-Length: 2\r\n\r\n"
    )
    assert rh.framing == core.LENGTH


def test_error_pages_are_small_and_close_the_connection():
    page = core.error_page(503, "no backend", retry_after=5)
    assert page.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    assert b"Retry-After: 5\r\n" in page and b"Connection: close\r\n" in page
    assert len(page) < 200


def test_health_marks_down_after_the_threshold_and_recovers_after_the_period():
    now = [0.0]
    health = Health(threshold=2, down_seconds=10, clock=lambda: now[0])
    a, b = Upstream("a", "h", 1), Upstream("b", "h", 2)
    health.failed("a")
    assert health.order((a, b)) == (a, b)
    health.failed("a")
    assert health.order((a, b)) == (b, a)
    now[0] = 10.5
    assert health.order((a, b)) == (a, b)


def test_upstream_addresses_parse():
    assert Upstream.parse("127.0.0.1:9001", "b1") == Upstream("b1", "127.0.0.1", 9001)
    assert Upstream.parse("[::1]:80").host == "::1"
    assert Upstream.parse("unix:/run/app.sock").unix == "/run/app.sock"
    with pytest.raises(ValueError):
        Upstream.parse("nohost")


def test_upstream_host_port_is_parsed_by_the_one_address_parser():
    # routing.addresses.parse_address: canonical host, a port from 1 to 65535, brackets for v6.
    assert Upstream.parse("Node1.Example:80", "b1") == Upstream("b1", "node1.example", 80)
    assert Upstream.parse("/run/app.sock").unix == "/run/app.sock"
    for bad in ("h:0", "h:65536", "::1:80", ":80", "h:8x"):
        with pytest.raises(InvalidAddress, match="unix:/path"):
            Upstream.parse(bad)


SIMPLE = b"HTTP/1.1 200 OK\r\nServer: s\r\nContent-Length: 2\r\nConnection: keep-alive\r\n"


def test_a_whole_simple_response_passes_through_with_route_headers_added():
    out = core.pass_through_response(SIMPLE + b"\r\nok", ((b"X-Backend", b"b1"),))
    assert out == SIMPLE + b"X-Backend: b1\r\n\r\nok"


@pytest.mark.parametrize(
    "head",
    [
        SIMPLE + b"X : y\r\n",  # space before the colon
        SIMPLE + b": y\r\n",  # empty name
        SIMPLE + b"Xy\r\n",  # no colon
        SIMPLE + b" folded\r\n",  # obs-fold
        SIMPLE + b"X: a\rb\r\n",  # bare CR
        SIMPLE + b"X: a\nb\r\n",  # bare LF
        SIMPLE + b"X: a\x01\r\n",  # control character
        SIMPLE.replace(b"HTTP/1.1", b"HTTP/1.0"),
        SIMPLE + b"Transfer-Encoding: chunked\r\n",
        SIMPLE.replace(b"keep-alive", b"close"),
        SIMPLE + b"Content-Length: 2\r\n",
        SIMPLE + b"Keep-Alive: timeout=5\r\n",
        SIMPLE.replace(b"200", b"204"),
        SIMPLE.replace(b"HTTP/1.1", b"http/1.1"),  # the parser refuses it: so must we
    ],
)
def test_anything_unusual_in_a_response_goes_through_the_parser(head):
    assert core.pass_through_response(head + b"\r\nok", ()) is None


CLOSING = b"HTTP/1.1 200 OK\r\nServer: gunicorn\r\nConnection: close\r\nContent-Length: 2\r\n"


def test_a_whole_response_that_closes_passes_through_without_its_connection_field():
    out = core.pass_through_closing_response(CLOSING + b"\r\nok", ((b"X-Backend", b"b1"),))
    assert out == (
        b"HTTP/1.1 200 OK\r\nServer: gunicorn\r\nContent-Length: 2\r\nX-Backend: b1\r\n\r\nok"
    )
    assert core.pass_through_response(CLOSING + b"\r\nok", ()) is None
    assert core.pass_through_closing_response(CLOSING.replace(b"close", b"Close") + b"\r\nok", ())


@pytest.mark.parametrize(
    "response",
    [
        SIMPLE + b"\r\nok",  # nothing to cut: pass_through_response's case
        CLOSING + b"Transfer-Encoding: chunked\r\n\r\nok",
        CLOSING + b"Connection: close\r\n\r\nok",
        CLOSING + b"Keep-Alive: timeout=5\r\n\r\nok",
        CLOSING + b"\r\no",  # not read whole
        SIMPLE + b"\r\n\r\nConnection: close\r\n",  # in the body, not the head
        CLOSING.replace(b"close", b"closed") + b"\r\nok",
    ],
)
def test_a_closing_response_with_anything_else_unusual_goes_through_the_parser(response):
    assert core.pass_through_closing_response(response, ()) is None


def test_a_response_not_read_whole_goes_through_the_parser():
    assert core.pass_through_response(SIMPLE + b"\r\no", ()) is None
    assert core.pass_through_response(SIMPLE + b"\r\nokHTTP/1.1", ()) is None
