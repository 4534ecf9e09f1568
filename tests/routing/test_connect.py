"""routing.connect: the one maker of Redis clients."""

import asyncio
import os

import pytest
import redis

from routing.connect import (
    async_client,
    check_redis_url,
    kombu_broker,
    master_moved,
    parse_sentinel_url,
    sync_client,
    with_credentials,
)
from scripts.sentinels import MASTER_NAME
from tests.sentinel_group import SentinelGroup
from tests.support import free_port, wait_until


@pytest.mark.parametrize(
    "url", ["redis://127.0.0.1:6379/0", "rediss://h:6380/1", "unix:///run/redis.sock"]
)
def test_it_accepts_redis_urls(url):
    assert check_redis_url(url) == url


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://127.0.0.1:6379", "must be a redis://, rediss://, unix:// or sentinel://"),
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


# --- Redis Sentinel -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "sentinel://10.0.0.1:26379,10.0.0.2:26379,10.0.0.3:26379/hosting/0",
        "sentinel://reader:s3cret@s1.example,s2.example:26380/hosting",
        "sentinel://[::1]:26379/hosting/2?sentinel_password=x",
    ],
)
def test_it_accepts_sentinel_urls(url):
    assert check_redis_url(url) == url


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("sentinel:///hosting/0", "names no sentinel"),
        ("sentinel://s1:26379/", "names no master"),
        ("sentinel://s1:notaport/hosting", "invalid sentinel"),
        ("sentinel://s1,,s2/hosting", "empty sentinel address"),
        ("sentinel://s1/hosting/zero", "is no number"),
        ("sentinel://s1/hosting/0/extra", "path beyond"),
        ("sentinel://s1/hosting?master=x", "unknown options master"),
    ],
)
def test_it_refuses_bad_sentinel_urls_naming_the_problem(url, problem):
    with pytest.raises(ValueError, match=problem):
        check_redis_url(url)


def test_a_refusal_never_shows_the_password():
    with pytest.raises(ValueError) as caught:
        check_redis_url("sentinel://reader:hunter2@s1:x/hosting")
    assert "hunter2" not in str(caught.value)


def test_a_sentinel_url_names_sentinels_master_db_and_both_users():
    spec = parse_sentinel_url(
        "sentinel://reader:p%40ss@S1.Example,[::1]:26380/hosting/3"
        "?sentinel_username=watch&sentinel_password=w"
    )
    assert [str(a) for a in spec.sentinels] == ["s1.example:26379", "[::1]:26380"]
    assert (spec.master, spec.db) == ("hosting", 3)
    assert spec.master_auth() == {"username": "reader", "password": "p@ss"}
    assert spec.sentinel_auth() == {"username": "watch", "password": "w"}


def test_credentials_go_in_front_of_every_form():
    assert with_credentials("redis://h:6379/0", "reader", "a/b") == "redis://reader:a%2Fb@h:6379/0"
    assert (
        with_credentials("sentinel://old:x@s1:1,s2:2/hosting/0", "panel", "p")
        == "sentinel://panel:p@s1:1,s2:2/hosting/0"
    )


def test_kombu_gets_its_own_sentinel_form_and_the_master_name():
    broker, options = kombu_broker("sentinel://celery:p@s1:26379,s2:26380/hosting/1")
    assert broker == "sentinel://celery:p@s1:26379/1;sentinel://celery:p@s2:26380/1"
    assert options == {
        "master_name": "hosting",
        "sentinel_kwargs": {"socket_connect_timeout": 2.0, "socket_timeout": 2.0},
    }
    assert kombu_broker("redis://h:6379/0") == ("redis://h:6379/0", {})


@pytest.fixture
def sentinel_group():
    group = SentinelGroup().start()
    try:
        yield group
    finally:
        group.cleanup()


def test_a_sync_client_finds_the_master_through_the_sentinels(sentinel_group):
    client = sync_client(sentinel_group.url)
    try:
        assert client.set("hosting:probe", b"1") is True
        port = client.connection_pool.get_master_address()[1]
        assert port == sentinel_group.first_master.port
    finally:
        client.close()


def test_a_sync_client_follows_a_fail_over(sentinel_group):
    client = sync_client(sentinel_group.url, timeout=1)
    try:
        client.set("hosting:probe", b"before")
        wait_until(lambda: _replicated(sentinel_group, b"before"), 10, what="replication")
        old = sentinel_group.kill_master()
        promoted = wait_until(
            lambda: sentinel_group.master() != old and sentinel_group.master(),
            30,
            interval=0.1,
            what="a replica promoted",
        )

        def write() -> bool:
            try:
                return client.set("hosting:probe", b"after")
            except redis.ConnectionError:
                return False

        wait_until(write, 10, interval=0.1, what="a write after the fail-over")
        assert client.connection_pool.get_master_address()[1] == promoted.port
        assert client.get("hosting:probe") == b"after"
    finally:
        client.close()


def test_an_async_client_sees_that_its_connection_talks_to_a_demoted_master(sentinel_group):
    async def scenario() -> tuple[bool, bool]:
        client = async_client(sentinel_group.url, timeout=1)
        pubsub = client.pubsub()
        try:
            await pubsub.subscribe("hosting:routes:changed")
            before = await master_moved(client, pubsub.connection)
            # Demote the master by hand, as a fail-over would: the other instance becomes the
            # master, and the open subscription still talks to the old one.
            await asyncio.to_thread(_failover, sentinel_group, 0)
            deadline = asyncio.get_running_loop().time() + 30
            while not await master_moved(client, pubsub.connection):
                assert asyncio.get_running_loop().time() < deadline, "no fail-over seen"
                await asyncio.sleep(0.1)
            return before, True
        finally:
            await pubsub.aclose()
            await client.aclose()

    assert asyncio.run(scenario()) == (False, True)


def test_a_plain_client_never_reports_a_moved_master():
    async def check() -> bool:
        client = async_client(os.environ["REDIS_URL"])
        pubsub = client.pubsub()
        try:
            await pubsub.subscribe("x")
            return await master_moved(client, pubsub.connection)
        finally:
            await pubsub.aclose()
            await client.aclose()

    assert asyncio.run(check()) is False


def _replicated(group: SentinelGroup, value: bytes) -> bool:
    replica = next(r for r in group.redis if r != group.master())
    client = redis.Redis(replica.host, replica.port, socket_timeout=1)
    try:
        return client.get("hosting:probe") == value
    finally:
        client.close()


def _failover(group: SentinelGroup, index: int) -> None:
    client = group.sentinel_client(index)
    try:
        client.execute_command("SENTINEL", "FAILOVER", MASTER_NAME)
    finally:
        client.close()
