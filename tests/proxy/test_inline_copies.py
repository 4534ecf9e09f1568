"""The engine's hot path writes a few things inline (once per request) that a cold path does
through a named method or a rule of proxy/core.py. These tests hold each inline copy equal to
its long form, with in-memory transports (no sockets), and hold the exchange's phase changes
to the one method and table that own them."""

from __future__ import annotations

import ast
import asyncio
from pathlib import Path

import pytest

from proxy import core
from proxy.core import ClientState, Timer
from proxy.engine import TRANSITIONS, Engine, Phase, Route, Upstream, UpstreamConnection
from proxy.engine._exchange import _ALLOWED
from tests.proxy.support import MemoryTransport

ENGINE_DIR = Path(__file__).resolve().parents[2] / "proxy" / "engine"
SIMPLE = b"GET /x HTTP/1.1\r\nHost: app.test\r\n\r\n"
# The same request, the long way: a field the fast lane does not take (it goes to httptools).
LONG_WAY = b"GET /x HTTP/1.1\r\nHost: app.test\r\nUser-Agent:  two spaces\r\n\r\n"
WHOLE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"  # passed through as it is
CHUNKED = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"


class Rig:
    """One engine, one client connection and one pooled upstream connection, in memory."""

    def __init__(self, resolver=None) -> None:
        self.upstream = Upstream.parse("127.0.0.1:9", "origin")
        route = Route(upstreams=(self.upstream,))
        self.engine = Engine(resolver or (lambda head, client: route))
        self.pool = self.engine.pool(self.upstream)
        self.conn = UpstreamConnection(self.pool, asyncio.get_running_loop())
        self.conn.connection_made(MemoryTransport())
        self.pool.put(self.conn)
        self.client = self.engine.protocol_factory()()
        self.client_transport = MemoryTransport()
        self.client.connection_made(self.client_transport)

    def request(self, raw: bytes):
        self.client.data_received(raw)
        self.engine.flush_writes()
        return self.client.active

    def respond(self, raw: bytes) -> None:
        self.conn.data_received(raw)
        self.engine.flush_writes()

    def client_view(self):
        c = self.client
        return (c.state, c.timer.kind, c.active, c.flow.read_paused, c.closing)

    def upstream_view(self):
        return (self.conn in self.pool.idle, self.pool.active, self.conn.exchange, self.conn.closed)


def run(coro):
    return asyncio.run(coro)


def test_the_examples_take_the_lanes_they_are_named_for():
    limits = core.Limits()
    assert core.simple_request(SIMPLE, limits, b"127.0.0.1", b"http", b"proxy") is not None
    assert core.simple_request(LONG_WAY, limits, b"127.0.0.1", b"http", b"proxy") is None
    assert core.pass_through_response(WHOLE, ()) is not None
    assert core.pass_through_response(CHUNKED, ()) is None


def test_a_passed_through_response_ends_as_the_long_way_does():
    async def go():
        fast, slow = Rig(), Rig()
        exchange = fast.request(SIMPLE)
        fast.respond(WHOLE)
        slow.request(SIMPLE)
        slow.respond(CHUNKED)  # flush -> complete -> ClientConnection.exchange_done
        assert exchange.phase == Phase.DONE
        assert fast.client_view() == slow.client_view()
        assert fast.upstream_view() == slow.upstream_view()
        # ... and both are what rules K and T say.
        assert fast.client.state == ClientState.IDLE
        assert fast.client.timer.kind == core.client_timer(ClientState.IDLE)
        assert core.keep_client(asked=True, request_done=True, closing=False)
        reuse = core.reuse_upstream(keep_alive=True, request_done=True, method=b"GET", status=200)
        assert fast.upstream_view() == (reuse, 0, None, False)
        assert fast.engine.stats.requests == slow.engine.stats.requests == {("origin", 200): 1}

    run(go())


def test_a_passed_through_closing_response_ends_as_the_long_way_does():
    closing = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"
    closing_chunked = CHUNKED.replace(b"OK\r\n", b"OK\r\nConnection: close\r\n", 1)

    async def go():
        fast, slow = Rig(), Rig()
        assert core.pass_through_closing_response(closing, ()) is not None
        assert core.pass_through_closing_response(closing_chunked, ()) is None
        exchange = fast.request(SIMPLE)
        fast.respond(closing)
        slow.request(SIMPLE)
        slow.respond(closing_chunked)
        assert exchange.phase == Phase.DONE
        assert fast.client_view() == slow.client_view()
        assert fast.client.state == ClientState.IDLE  # the client's connection stays open
        assert fast.upstream_view() == slow.upstream_view() == (False, 0, None, True)
        assert b"close" not in b"".join(fast.client_transport.written).lower()

    run(go())


@pytest.mark.parametrize("raw", [SIMPLE, LONG_WAY])
def test_a_request_without_a_body_runs_the_timer_rule_t_names(raw):
    async def go():
        pending = asyncio.get_running_loop().create_future()
        rig = Rig(lambda head, client: pending)  # an async resolver that does not answer yet
        exchange = rig.request(raw)
        assert exchange.phase == Phase.ROUTING
        assert rig.client.state == ClientState.BUSY
        assert rig.client.timer.kind == core.client_timer(ClientState.BUSY, reading_body=False)
        pending.cancel()

    run(go())


def test_the_fast_lane_and_the_long_way_leave_the_same_connection_state():
    async def go():
        fast, slow = Rig(), Rig()
        a, b = fast.request(SIMPLE), slow.request(LONG_WAY)
        assert a.phase == b.phase == Phase.SENT
        assert fast.client_view()[:2] == slow.client_view()[:2]
        # The upstream's timer once the request went out whole, no response byte yet.
        kind = core.upstream_timer(request_done=True, got_bytes=False)
        assert fast.conn.timer.kind == slow.conn.timer.kind == kind == Timer.FIRST_BYTE

    run(go())


def test_after_the_first_response_bytes_the_upstream_runs_the_read_timer():
    async def go():
        rig = Rig()
        rig.request(SIMPLE)
        rig.respond(CHUNKED[:-5])  # head and a chunk; the last chunk is still to come
        assert rig.client.active.phase == Phase.RESPONDING
        assert rig.conn.timer.kind == core.upstream_timer(request_done=True, got_bytes=True)

    run(go())


def test_only_exchange_enter_changes_a_phase():
    places = []
    for path in sorted(ENGINE_DIR.glob("*.py")):
        tree = ast.parse(path.read_text())
        for func in ast.walk(tree):
            if not isinstance(func, ast.FunctionDef):
                continue
            for node in ast.walk(func):
                targets = []
                if isinstance(node, ast.Assign):
                    targets = node.targets
                elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
                    targets = [node.target]
                for target in targets:
                    if isinstance(target, ast.Attribute) and target.attr == "phase":
                        places.append((path.name, func.name))
    assert places == [("_exchange.py", "_enter")]


def test_the_transition_table_covers_every_phase_and_its_masks_agree():
    assert set(TRANSITIONS) == set(Phase)
    assert TRANSITIONS[Phase.TUNNEL] == TRANSITIONS[Phase.DONE] == frozenset()
    for phase in Phase:
        assert {p for p in Phase if _ALLOWED[phase] >> p & 1} == TRANSITIONS[phase]
    # Every phase but QUEUED can be entered, and every one can reach DONE (or is final).
    entered = set().union(*TRANSITIONS.values())
    assert entered == set(Phase) - {Phase.QUEUED}
    assert all(Phase.DONE in nxt for p, nxt in TRANSITIONS.items() if nxt)


def test_a_move_the_table_does_not_list_is_refused():
    from proxy.engine import InvalidTransition

    async def go():
        rig = Rig()
        exchange = rig.request(SIMPLE)
        rig.respond(WHOLE)
        with pytest.raises(InvalidTransition, match="DONE -> SENT"):
            exchange.send_on(rig.conn)

    run(go())
