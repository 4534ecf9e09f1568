"""routing.connect: the one maker of Redis clients."""

import asyncio
import os

import pytest
import redis

from routing.connect import async_client, check_redis_url, sync_client
from tests.support import free_port


@pytest.mark.parametrize(
    "url", ["redis://127.0.0.1:6379/0", "rediss://h:6380/1", "unix:///run/redis.sock"]
)
def test_it_accepts_redis_urls(url):
    assert check_redis_url(url) == url


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://127.0.0.1:6379", "must be a redis://"),
        ("redis://127.0.0.1:notaport/0", "invalid port"),
        ("redis:///0", "no host"),
    ],
)
def test_it_refuses_other_urls_naming_the_problem(url, problem):
    with pytest.raises(ValueError, match=problem):
        check_redis_url(url)


def test_a_sync_client_talks_to_the_suites_redis():
    client = sync_client(os.environ["REDIS_URL"])
    assert client.ping() is True
    client.close()


def test_a_sync_client_fails_fast_on_a_closed_port():
    client = sync_client(f"redis://127.0.0.1:{free_port()}/0", timeout=0.5)
    with pytest.raises(redis.ConnectionError):
        client.ping()


def test_an_async_client_talks_to_the_suites_redis():
    async def ping() -> bool:
        client = async_client(os.environ["REDIS_URL"])
        try:
            return await client.ping()
        finally:
            await client.aclose()

    assert asyncio.run(ping()) is True
