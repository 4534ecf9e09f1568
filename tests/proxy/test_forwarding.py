"""Forwarding through the engine, real sockets both sides."""

from __future__ import annotations

import asyncio
import json
import os
import tempfile

from proxy.engine import Answer, Route, Upstream
from tests.proxy.support import Origin, closed_by_peer, connect, exchange, get, read_response
from tests.support import wait_until


def echoed(resp) -> dict:
    assert resp.status == 200, resp.body
    return json.loads(resp.body)


def header(seen: dict, name: str) -> list[str]:
    return [v for k, v in seen["headers"] if k.lower() == name.lower()]


def test_it_forwards_a_request_and_relays_the_response(serve, origin):
    proxy = serve(origin)
    resp = exchange(proxy.port, get(path="/"))
    assert (resp.status, resp.body, resp.header("X-Origin")) == (200, b"ok", "o1")


def test_it_rebuilds_the_upstream_head_with_forwarding_fields(serve, origin):
    proxy = serve(origin)
    seen = echoed(exchange(proxy.port, get(path="/echo?q=1")))
    assert seen["target"] == "/echo?q=1"
    assert header(seen, "Host") == ["app.test"]
    assert header(seen, "X-Forwarded-For") == ["127.0.0.1"]
    assert header(seen, "X-Forwarded-Proto") == ["http"]
    assert header(seen, "X-Forwarded-Host") == ["app.test"]
    assert header(seen, "Via") == ["1.1 proxy"]
    (rid,) = header(seen, "X-Request-ID")
    assert len(rid) == 32


def test_it_replaces_forwarding_fields_sent_by_an_untrusted_client(serve, origin):
    proxy = serve(origin)
    extra = b"X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Proto: https\r\nForwarded: for=6.6.6.6\r\n"
    seen = echoed(exchange(proxy.port, get(path="/echo", extra=extra)))
    assert header(seen, "X-Forwarded-For") == ["127.0.0.1"]
    assert header(seen, "X-Forwarded-Proto") == ["http"]
    assert header(seen, "Forwarded") == []


def test_it_keeps_forwarding_fields_from_a_trusted_proxy(serve, origin):
    proxy = serve(origin, trusted_proxies=("127.0.0.0/8",))
    extra = b"X-Forwarded-For: 1.2.3.4\r\nX-Forwarded-Proto: https\r\nVia: 1.1 edge\r\n"
    seen = echoed(exchange(proxy.port, get(path="/echo", extra=extra)))
    assert header(seen, "X-Forwarded-For") == ["1.2.3.4, 127.0.0.1"]
    assert header(seen, "X-Forwarded-Proto") == ["https"]
    assert header(seen, "Via") == ["1.1 edge, 1.1 proxy"]


def test_it_keeps_a_well_formed_request_id(serve, origin):
    # from a trusted proxy (an untrusted client's own id is replaced, see below)
    proxy = serve(origin, trusted_proxies=("127.0.0.0/8",))
    seen = echoed(exchange(proxy.port, get(path="/echo", extra=b"X-Request-ID: abc-123\r\n")))
    assert header(seen, "X-Request-ID") == ["abc-123"]


def test_it_replaces_a_request_id_sent_by_an_untrusted_client(serve, origin):
    proxy = serve(origin)
    seen = echoed(exchange(proxy.port, get(path="/echo", extra=b"X-Request-ID: abc-123\r\n")))
    (rid,) = header(seen, "X-Request-ID")
    assert rid != "abc-123" and len(rid) == 32


def test_it_drops_fields_whose_names_contain_an_underscore(serve, origin):
    proxy = serve(origin, trusted_proxies=("127.0.0.0/8",))  # even from a trusted peer
    extra = b"SCRIPT_NAME: /admin\r\nX_Forwarded_For: 6.6.6.6\r\nX-Kept: 1\r\n"
    seen = echoed(exchange(proxy.port, get(path="/echo", extra=extra)))
    names = {k.lower() for k, _ in seen["headers"]}
    assert not any("_" in n for n in names)
    assert header(seen, "X-Kept") == ["1"]


def test_it_strips_hop_by_hop_request_fields_and_those_named_in_connection(serve, origin):
    proxy = serve(origin)
    extra = (
        b"Connection: keep-alive, X-Secret\r\nX-Secret: 1\r\nKeep-Alive: 5\r\nTE: trailers\r\n"
        b"Proxy-Authorization: Basic x\r\nUpgrade: h2c\r\nX-Public: 1\r\n"
    )
    seen = echoed(exchange(proxy.port, get(path="/echo", extra=extra)))
    names = {k.lower() for k, _ in seen["headers"]}
    assert names.isdisjoint({"x-secret", "keep-alive", "te", "proxy-authorization", "upgrade"})
    assert "connection" not in names
    assert header(seen, "X-Public") == ["1"]


def test_it_strips_hop_by_hop_response_fields(serve, origin):
    proxy = serve(origin)
    resp = exchange(proxy.port, get(path="/hop"))
    names = {k.lower() for k, _ in resp.headers}
    assert "x-secret" not in names and "keep-alive" not in names
    assert resp.header("X-Public") == "1"


def test_it_reuses_upstream_connections_across_client_requests(serve, origin):
    proxy = serve(origin)
    with connect(proxy.port) as sock:
        for _ in range(5):
            sock.sendall(get())
            assert read_response(sock).status == 200
    with connect(proxy.port) as sock:
        sock.sendall(get())
        assert read_response(sock).status == 200
    assert origin.connections == 1


def test_it_answers_pipelined_requests_in_order(serve, origin):
    proxy = serve(origin)
    with connect(proxy.port) as sock:
        sock.sendall(get(path="/echo/1") + get(path="/echo/2") + get(path="/echo/3"))
        targets = [echoed(read_response(sock))["target"] for _ in range(3)]
    assert targets == ["/echo/1", "/echo/2", "/echo/3"]


def test_it_forwards_a_content_length_body(serve, origin):
    proxy = serve(origin)
    raw = b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"
    seen = echoed(exchange(proxy.port, raw))
    assert seen["body"] == "hello"
    assert header(seen, "Content-Length") == ["5"]


def test_it_forwards_a_chunked_body_chunked(serve, origin):
    proxy = serve(origin)
    raw = b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
    raw += b"3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-Trailer: t\r\n\r\n"
    seen = echoed(exchange(proxy.port, raw))
    assert seen["body"] == "abcde"
    assert header(seen, "Transfer-Encoding") == ["chunked"]
    assert header(seen, "X-Trailer") == []


def test_it_streams_a_large_request_body(serve, origin):
    proxy = serve(origin)
    body = os.urandom(3 * 1024 * 1024).hex().encode()[: 3 * 1024 * 1024]
    with connect(proxy.port, timeout=20) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % len(body))
        sock.sendall(body)
        seen = echoed(read_response(sock))
    assert seen["body"].encode() == body


def test_it_relays_a_large_response(serve, origin):
    proxy = serve(origin)
    resp = exchange(proxy.port, get(path="/big"))
    assert resp.status == 200 and resp.body == b"x" * (1024 * 1024)


def test_it_rechunks_a_chunked_response(serve, origin):
    proxy = serve(origin)
    resp = exchange(proxy.port, get(path="/chunked"))
    assert resp.body == b"hello world"
    assert resp.header("Transfer-Encoding") == "chunked"


def test_it_turns_a_close_delimited_response_into_chunks_for_http11(serve, origin):
    proxy = serve(origin)
    with connect(proxy.port) as sock:
        sock.sendall(get(path="/eof"))
        resp = read_response(sock)
        assert resp.body == b"until the end" and resp.header("Transfer-Encoding") == "chunked"
        sock.sendall(get(path="/"))  # the client connection is still usable
        assert read_response(sock).body == b"ok"


def test_it_sends_a_close_delimited_body_to_an_http10_client(serve, origin):
    proxy = serve(origin)
    with connect(proxy.port) as sock:
        sock.sendall(b"GET /chunked HTTP/1.0\r\nHost: a\r\n\r\n")
        resp = read_response(sock)
        assert resp.body == b"hello world" and resp.header("Transfer-Encoding") is None
        assert closed_by_peer(sock)


def test_it_answers_head_without_a_body_and_keeps_the_connection(serve, origin):
    proxy = serve(origin)
    with connect(proxy.port) as sock:
        sock.sendall(b"HEAD /big HTTP/1.1\r\nHost: a\r\n\r\n")
        resp = read_response(sock, head_request=True)
        assert resp.status == 200 and resp.header("Content-Length") == "1048576"
        sock.sendall(get(path="/"))
        assert read_response(sock).body == b"ok"


def test_it_sends_100_continue_and_then_forwards_the_body(serve, origin):
    proxy = serve(origin)
    with connect(proxy.port) as sock:
        sock.sendall(
            b"POST /echo HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n"
        )
        assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"data")
        seen = echoed(read_response(sock))
    assert seen["body"] == "data"
    assert header(seen, "Expect") == []


def test_it_tunnels_a_websocket_after_the_101(serve, origin):
    proxy = serve(origin)
    with connect(proxy.port) as sock:
        sock.sendall(get(path="/ws", extra=b"Connection: Upgrade\r\nUpgrade: websocket\r\n"))
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(1000)
        assert head.startswith(b"HTTP/1.1 101 ")
        sock.sendall(b"\x81\x02hi")
        assert sock.recv(100) == b"\x81\x02hi"


def test_it_does_not_tunnel_when_the_upstream_refuses_the_upgrade(serve, origin):
    proxy = serve(origin)
    with connect(proxy.port) as sock:
        sock.sendall(get(path="/ws-no", extra=b"Connection: Upgrade\r\nUpgrade: websocket\r\n"))
        resp = read_response(sock)
        assert resp.status == 200 and resp.header("Connection") == "close"
        assert closed_by_peer(sock)


def test_it_rewrites_absolute_form_to_origin_form(serve, origin):
    proxy = serve(origin)
    seen = echoed(exchange(proxy.port, b"GET http://a/echo?x HTTP/1.1\r\nHost: a\r\n\r\n"))
    assert seen["target"] == "/echo?x"


def test_it_forwards_to_a_unix_socket(serve, lt):
    with tempfile.TemporaryDirectory() as tmp:
        origin = Origin(lt, "sock", unix=os.path.join(tmp, "app.sock")).start()
        try:
            proxy = serve(origin)
            assert exchange(proxy.port, get()).header("X-Origin") == "sock"
        finally:
            origin.stop()


def test_an_async_resolver_can_answer_itself_with_extra_headers(serve):
    async def resolver(head, client):
        await asyncio.sleep(0)
        return Route(
            answer=Answer(404, b"no such app\n"), response_headers=((b"X-Backend", b"b1"),)
        )

    proxy = serve(resolver)
    resp = exchange(proxy.port, get())
    assert (resp.status, resp.body, resp.header("X-Backend")) == (404, b"no such app\n", "b1")


def test_resolver_response_headers_are_added_to_upstream_responses(serve, origin):
    route = Route(
        upstreams=(Upstream.parse(origin.address, "o1"),), response_headers=((b"X-Backend", b"b7"),)
    )
    proxy = serve(lambda head, client: route)
    assert exchange(proxy.port, get()).header("X-Backend") == "b7"


def test_the_resolver_sees_the_validated_request(serve, origin):
    seen = []

    def resolver(head, client):
        seen.append((head.method, head.host, head.path, client.scheme))
        return Route(upstreams=(Upstream.parse(origin.address),))

    proxy = serve(resolver)
    exchange(proxy.port, get(host="App.Test:80", path="/x%2Fy"))
    assert seen == [(b"GET", b"App.Test:80", "/x%2Fy", "http")]


def test_on_done_reports_the_final_status(serve, origin):
    statuses = []
    route = Route(upstreams=(Upstream.parse(origin.address),), on_done=statuses.append)
    proxy = serve(lambda head, client: route)
    exchange(proxy.port, get())
    assert statuses == [200]


def test_on_done_runs_once_even_when_the_client_leaves_during_an_async_resolver(serve, origin):
    statuses = []
    release = asyncio.Event()

    async def resolver(head, client):
        await release.wait()
        return Route(upstreams=(Upstream.parse(origin.address),), on_done=statuses.append)

    proxy = serve(resolver)
    with connect(proxy.port) as sock:
        sock.sendall(get())
        wait_until(lambda: proxy.lt.call(len, proxy.engine.connections) == 1, what="connected")
    wait_until(lambda: proxy.lt.call(len, proxy.engine.connections) == 0, what="client gone")
    proxy.lt.call(release.set)
    wait_until(lambda: statuses, what="on_done")
    assert statuses == [0]
    assert origin.received == b""


def test_an_answer_before_the_request_body_ended_says_connection_close(serve, origin):
    proxy = serve(origin)
    with connect(proxy.port) as sock:
        # More than the 64 KiB read before contacting the upstream, and the body not finished.
        head = b"POST /early HTTP/1.1\r\nHost: a\r\nContent-Length: 200000\r\n\r\n"
        sock.sendall(head + b"x" * 70000)
        resp = read_response(sock)
        assert resp.status == 200 and resp.header("Connection") == "close"
