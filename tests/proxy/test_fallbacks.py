"""Requests the proxy sends to a backend other than the route table's first choice (fallbacks)
are counted by reason and shown on /metrics."""

from __future__ import annotations

from proxy.engine import Route, Upstream
from proxy.front import FrontResolver
from proxy.metrics import render_metrics
from routing import ALGORITHM, Backend, RouteTable
from tests.proxy.support import Origin, exchange, get
from tests.support import free_port


def test_a_request_retried_past_a_first_choice_that_refuses_counts_as_a_connect_fallback(
    serve, origin
):
    ups = (Upstream.parse(f"127.0.0.1:{free_port()}", "b1"), Upstream.parse(origin.address, "b2"))
    proxy = serve(lambda head, client: Route(upstreams=ups), fail_threshold=100)
    assert exchange(proxy.port, get()).status == 200
    assert exchange(proxy.port, get()).status == 200
    assert proxy.lt.call(lambda: dict(proxy.engine.stats.fallbacks)) == {"connect": 2}
    text = proxy.lt.call(render_metrics, proxy.engine, None, "w0")
    assert 'proxy_fallbacks_total{worker="w0",reason="connect"} 2' in text.splitlines()


def test_a_request_served_by_its_first_choice_is_no_fallback(serve, origin):
    proxy = serve(origin)
    assert exchange(proxy.port, get()).status == 200
    assert proxy.lt.call(lambda: dict(proxy.engine.stats.fallbacks)) == {}


def test_the_front_counts_a_first_choice_held_down_as_a_down_fallback(serve, lt):
    second = Origin(lt, "b2").start()
    table = RouteTable(
        1, ALGORITHM, (Backend("b1", f"127.0.0.1:{free_port()}"), Backend("b2", second.address))
    )
    host = next(
        f"app{i}.test" for i in range(1000) if table.backend_for(f"app{i}.test").name == "b1"
    )
    holder: dict = {}
    proxy = serve(lambda head, client: holder["front"](head, client), fail_threshold=1)
    holder["front"] = FrontResolver(lambda: table, "panel.localhost", proxy.engine)
    try:
        for _ in range(3):
            assert exchange(proxy.port, get(host=host)).header("X-Origin") == "b2"
        # the first request found b1 refusing (and marked it down); the next two skipped it
        assert proxy.lt.call(lambda: dict(proxy.engine.stats.fallbacks)) == {
            "connect": 1,
            "down": 2,
        }
    finally:
        second.stop()
