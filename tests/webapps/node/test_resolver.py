"""The node's resolver on its hot path: one Route per app, shared by the requests in flight,
and the in-flight count that draining waits on kept right across them."""

from __future__ import annotations

from webapps.node.directory import AppDirectory
from webapps.node.node import Node
from webapps.node.server import NodeResolver


def test_requests_to_one_app_share_its_route_and_are_each_counted(supervisor_factory, loop_thread):
    sup = supervisor_factory()

    async def scenario():
        directory = AppDirectory(system={}, lookup={}.get, cache_seconds=0)
        resolver = NodeResolver(
            Node(name="b7", supervisor=sup, directory=directory), expose_name=True
        )
        try:
            first = resolver._forward("a.test", "/run/a.sock")
            second = resolver._forward("a.test", "/run/a.sock")
            shared = first is second
            counted = resolver.inflight["a.test"]
            first.on_done(200)
            still = await resolver.drained("a.test", 0.01)
            second.on_done(0)
            done = await resolver.drained("a.test", 0.01)
            moved = resolver._forward("a.test", "/run/a2.sock")  # the app got a new socket
            moved.on_done(200)
            return shared, counted, still, done, moved.upstreams[0].unix, dict(resolver.inflight)
        finally:
            resolver.guard.close()
            resolver.static.close()
            directory.close()

    shared, counted, still, done, socket, left = loop_thread.run(scenario())
    assert shared and counted == 2
    assert still is False and done is True
    assert socket == "/run/a2.sock"
    assert left == {}
