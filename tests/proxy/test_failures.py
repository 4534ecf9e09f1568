"""Upstream failures, timeouts and retries through the engine, real sockets."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from proxy.engine import Route, Upstream
from tests.proxy.support import Origin, closed_by_peer, connect, exchange, get, read_response
from tests.support import free_port, wait_until


def route_to(*addresses: str):
    route = Route(upstreams=tuple(Upstream.parse(a) for a in addresses))
    return lambda head, client: route


def test_a_refused_connection_is_a_502(serve):
    proxy = serve(route_to(f"127.0.0.1:{free_port()}"))
    resp = exchange(proxy.port, get())
    assert resp.status == 502


def test_no_upstream_is_a_503_with_retry_after(serve):
    proxy = serve(lambda head, client: Route(), retry_after=7)
    resp = exchange(proxy.port, get())
    assert resp.status == 503 and resp.header("Retry-After") == "7"


def test_an_upstream_slower_than_the_first_byte_timeout_is_a_504(serve, origin):
    origin.slow_seconds = 30.0  # the client's 5 s socket timeout would expire first
    proxy = serve(origin, first_byte_timeout=0.3)
    resp = exchange(proxy.port, get(path="/slow-head"))
    assert resp.status == 504


@pytest.fixture
def blackhole():
    """A listening socket whose accept queue is full, so new connections hang in SYN-SENT."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(0)
    fillers = []
    port = sock.getsockname()[1]
    for _ in range(4):
        f = socket.socket()
        f.setblocking(False)
        f.connect_ex(("127.0.0.1", port))  # non-blocking: EINPROGRESS is the expected answer
        fillers.append(f)
    yield port
    for f in fillers:
        f.close()
    sock.close()


def test_an_upstream_that_never_accepts_is_a_504_after_the_connect_timeout(serve, blackhole):
    proxy = serve(route_to(f"127.0.0.1:{blackhole}"), connect_timeout=0.3, max_attempts=1)
    resp = exchange(proxy.port, get())
    assert resp.status == 504


def test_a_connection_made_after_its_client_left_is_closed_not_pooled(serve):
    """A sync gunicorn worker that accepted such a connection would wait on it for a request
    (serving nobody else) as long as it stayed in the pool."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)  # an accept queue of one
    filler = socket.create_connection(listener.getsockname())  # ... now full: SYNs are dropped
    proxy = serve(
        route_to("{}:{}".format(*listener.getsockname())), connect_timeout=8, max_attempts=1
    )
    try:
        with connect(proxy.port) as client:
            client.sendall(get())
            wait_until(lambda: proxy.lt.call(lambda: bool(proxy.engine.pools)), 5, what="a connect")
        wait_until(
            lambda: proxy.lt.call(lambda: not proxy.engine.connections), 5, what="client gone"
        )
        listener.accept()[0].close()  # the filler: room for the proxy's SYN, retried in ~1 s
        listener.settimeout(8)
        upstream, _ = listener.accept()
        with upstream:
            assert closed_by_peer(upstream), "the unused upstream connection was kept open"
        pools = proxy.lt.call(lambda: [len(p.idle) for p in proxy.engine.pools.values()])
        assert pools == [0]
    finally:
        filler.close()
        listener.close()


def test_an_invalid_upstream_response_is_a_502(serve, origin):
    proxy = serve(origin)
    assert exchange(proxy.port, get(path="/garbage")).status == 502


def test_a_refused_candidate_is_skipped_for_the_next(serve, origin):
    proxy = serve(route_to(f"127.0.0.1:{free_port()}", origin.address))
    resp = exchange(proxy.port, get())
    assert resp.status == 200 and resp.header("X-Origin") == "o1"


def test_a_post_is_never_sent_twice(serve, origin):
    proxy = serve(route_to(origin.address, origin.address))
    resp = exchange(proxy.port, b"POST /drop HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi")
    assert resp.status == 502
    assert [r["method"] for r in origin.requests] == ["POST"]


def test_a_get_whose_connection_died_before_any_byte_is_retried(serve, origin):
    proxy = serve(route_to(origin.address, origin.address))
    resp = exchange(proxy.port, get(path="/drop"))
    assert resp.status == 502
    assert [r["target"] for r in origin.requests] == ["/drop", "/drop"]


def test_a_killed_backend_is_marked_down_and_its_traffic_goes_to_the_next(serve, lt):
    first, second = Origin(lt, "first").start(), Origin(lt, "second").start()
    ups = (Upstream.parse(first.address, "first"), Upstream.parse(second.address, "second"))
    holder = {}
    proxy = serve(lambda head, client: Route(upstreams=holder["engine"].health.order(ups)))
    holder["engine"] = proxy.engine
    try:
        assert exchange(proxy.port, get()).header("X-Origin") == "first"
        first.stop()
        answers = [exchange(proxy.port, get()).header("X-Origin") for _ in range(5)]
        assert answers == ["second"] * 5
        assert proxy.lt.call(proxy.engine.health.is_down, "first")
    finally:
        second.stop()


def test_a_slow_request_head_gets_408_at_the_deadline_and_is_closed(serve, origin):
    proxy = serve(origin, header_timeout=0.3)
    with connect(proxy.port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\nX-Slow: ")
        started = time.monotonic()
        resp = read_response(sock)
        assert resp.status == 408
        assert time.monotonic() - started > 0.2  # not before the deadline (0.3 s from connect)
        assert closed_by_peer(sock)
    assert origin.received == b""


def test_a_connection_that_sends_nothing_is_closed_at_the_header_deadline(serve, origin):
    proxy = serve(origin, header_timeout=0.3)
    with connect(proxy.port) as sock:
        assert read_response(sock).status == 408
        assert closed_by_peer(sock)


def test_many_slow_header_connections_are_all_closed_while_traffic_flows(serve, origin):
    proxy = serve(origin, header_timeout=0.5)
    slow = [connect(proxy.port) for _ in range(100)]
    try:
        for sock in slow:
            sock.sendall(b"GET / HTTP/1.1\r\n")
        for _ in range(10):
            assert exchange(proxy.port, get()).status == 200
        assert all(closed_by_peer(sock, timeout=5) for sock in slow)
    finally:
        for sock in slow:
            sock.close()


def test_an_idle_keep_alive_connection_is_closed_after_the_idle_timeout(serve, origin):
    proxy = serve(origin, idle_timeout=0.3)
    with connect(proxy.port) as sock:
        sock.sendall(get())
        assert read_response(sock).status == 200
        assert closed_by_peer(sock, timeout=3)


def test_shutdown_lets_an_in_flight_request_finish(serve, origin):
    origin.slow_seconds = 0.3
    proxy = serve(origin)
    result = {}

    def client():
        result["resp"] = exchange(proxy.port, get(path="/slow-head"))

    thread = threading.Thread(target=client)
    thread.start()
    wait_until(lambda: origin.requests, what="the request at the origin")
    proxy.lt.run(proxy.engine.shutdown(grace=5))
    thread.join(5)
    assert result["resp"].status == 200
    assert result["resp"].header("Connection") == "close"


def test_shutdown_closes_connections_that_have_no_request_under_way(serve, origin):
    proxy = serve(origin)
    with connect(proxy.port) as fresh, connect(proxy.port) as used:
        used.sendall(get())
        assert read_response(used).status == 200
        wait_until(lambda: proxy.lt.call(len, proxy.engine.connections) == 2, what="accepted")
        # With a 60 s grace, only closing them at once lets shutdown end within 10 s.
        proxy.lt.run(proxy.engine.shutdown(grace=60), timeout=10)
        assert closed_by_peer(fresh, timeout=2) and closed_by_peer(used, timeout=2)


def test_a_stalled_request_body_gets_408_and_never_reaches_the_backend(serve, origin):
    proxy = serve(origin, idle_timeout=0.3)
    with connect(proxy.port) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc")
        assert read_response(sock).status == 408
        assert closed_by_peer(sock)
    assert origin.received == b""
