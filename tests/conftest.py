"""Fixtures for the whole suite (the private Redis starts earlier: tests/private_redis.py)."""

from pathlib import Path

import pytest
from django.conf import settings

from routing.connect import sync_client
from tests.support import RedisServer


@pytest.fixture(autouse=True, scope="session")
def static_root():
    # WhiteNoise warns (an error under this suite) when STATIC_ROOT is missing, and a fresh
    # clone has not run collectstatic.
    Path(settings.STATIC_ROOT).mkdir(parents=True, exist_ok=True)


@pytest.fixture
def redis_server():
    """A redis-server of the test's own, which it may stop, flush or restart."""
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def redis_client(redis_server):
    client = sync_client(redis_server.url, timeout=5)
    try:
        yield client
    finally:
        client.close()
