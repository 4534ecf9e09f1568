from __future__ import annotations

import pytest

from proxy.engine import Engine, EngineConfig, Route, Upstream
from tests.proxy.support import Origin
from tests.support import LoopThread


@pytest.fixture
def lt():
    loop_thread = LoopThread()
    yield loop_thread
    loop_thread.stop()


@pytest.fixture
def origin(lt):
    server = Origin(lt, "o1").start()
    yield server
    server.stop()


class Running:
    def __init__(self, lt: LoopThread, engine: Engine, port: int) -> None:
        self.lt = lt
        self.engine = engine
        self.port = port


@pytest.fixture
def serve(lt):
    """Start an engine on a free port: ``serve(resolver, **config)`` or ``serve(origin)``."""
    started: list[Engine] = []

    def start(target, **config) -> Running:
        if isinstance(target, Origin):
            route = Route(upstreams=(Upstream.parse(target.address, target.name),))
            resolver = lambda head, client: route  # noqa: E731
        else:
            resolver = target
        engine = Engine(resolver, EngineConfig(**config))

        async def go():
            return await engine.listen("127.0.0.1", 0)

        server = lt.run(go())
        started.append(engine)
        return Running(lt, engine, server.sockets[0].getsockname()[1])

    yield start
    for engine in started:
        lt.run(engine.shutdown(grace=0.5))
