"""Fixtures for the pool's tests: a Redis of the test's own that it may stop, flush or restart."""

from __future__ import annotations

import pytest
import redis

from routing.table import ALGORITHM, Backend, RouteTable
from tests.support import RedisServer


@pytest.fixture
def redis_server():
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def redis_client(redis_server):
    client = redis.Redis.from_url(redis_server.url, socket_timeout=5, socket_connect_timeout=5)
    try:
        yield client
    finally:
        client.close()


def make_table(version: int, *names: str) -> RouteTable:
    """A table with active backends ``names`` (default b1, b2) on made-up loopback ports."""
    names = names or ("b1", "b2")
    backends = tuple(
        Backend(name=name, address=f"127.0.0.1:{9100 + i}", weight=1, state="active")
        for i, name in enumerate(names)
    )
    return RouteTable(version=version, algorithm=ALGORITHM, backends=backends)
