"""Redis access control (scripts/redis_users.py) on a real redis-server started with its ACL
file: readers read and subscribe only, the publisher publishes, nobody else writes the table."""

from __future__ import annotations

import asyncio

import pytest
import redis

from routing.publish import channel, publish_table, signature_key, table_key
from routing.subscriber import RouteSubscriber
from scripts.redis_users import ROLES, rules, urls, write_acl_file
from tests.routing.support import PUBLISHER, make_table
from tests.support import RedisServer


@pytest.fixture(scope="module")
def acl_redis(tmp_path_factory):
    var_dir = tmp_path_factory.mktemp("acl-var")
    acl = write_acl_file(var_dir)
    server = RedisServer(args=("--aclfile", str(acl))).start()
    from scripts.redis_users import ensure_passwords

    role_urls = urls(server.url, ensure_passwords(var_dir))
    try:
        yield server, role_urls, acl
    finally:
        server.cleanup()


def client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=5)


def test_the_acl_file_and_the_passwords_are_private(acl_redis):
    _, _, acl = acl_redis
    assert acl.stat().st_mode & 0o077 == 0
    assert (acl.parent / "users.json").stat().st_mode & 0o077 == 0


def test_a_connection_without_a_password_can_do_nothing(acl_redis):
    server, _, _ = acl_redis
    with pytest.raises(redis.AuthenticationError):
        client(server.url).get(table_key())


def test_the_publisher_publishes_and_a_reader_reads_and_subscribes(acl_redis):
    _, role_urls, _ = acl_redis
    publisher = client(role_urls["publisher"])
    assert publish_table(publisher, make_table(10**15 + 1), signing_key=PUBLISHER)

    async def read() -> int | None:
        sub = RouteSubscriber(role_urls["reader"], trusted_keys=[PUBLISHER.public_key()])
        await sub.start()
        try:
            assert sub.stats.connected, sub.stats.last_error
            publish_table(publisher, make_table(10**15 + 2), signing_key=PUBLISHER)
            return (await sub.wait_for_version(10**15 + 2, timeout=10)).version
        finally:
            await sub.stop()

    assert asyncio.run(read()) == 10**15 + 2


@pytest.mark.parametrize(
    "command",
    [
        ("SET", "hosting:routes", "{}"),
        ("SET", "hosting:routes:sig", "x"),
        ("DEL", "hosting:routes"),
        ("PUBLISH", "hosting:routes:changed", "9"),
        ("GET", "hosting:other"),
        ("MGET", "hosting:celery:celery"),
        ("FLUSHALL",),
        ("CONFIG", "GET", "*"),
        ("EVAL", "return redis.call('SET', KEYS[1], 'x')", "1", "hosting:routes"),
    ],
    ids=lambda c: " ".join(c[:2]),
)
def test_a_readers_credentials_can_do_nothing_else(acl_redis, command):
    _, role_urls, _ = acl_redis
    with pytest.raises(redis.exceptions.NoPermissionError):
        client(role_urls["reader"]).execute_command(*command)


@pytest.mark.parametrize("role", ["panel", "celery"])
def test_the_panel_and_celery_may_read_the_table_but_not_write_it(acl_redis, role):
    _, role_urls, _ = acl_redis
    user = client(role_urls[role])
    user.mget([table_key(), signature_key()])
    user.set("hosting:cache:1:x", "y")
    user.lpush("hosting:celery:celery", "task")
    for command in (("SET", table_key(), "{}"), ("SET", signature_key(), "x"), ("FLUSHALL",)):
        with pytest.raises(redis.exceptions.NoPermissionError):
            user.execute_command(*command)


def test_the_publisher_may_touch_nothing_but_the_table(acl_redis):
    _, role_urls, _ = acl_redis
    publisher = client(role_urls["publisher"])
    for command in (("SET", "hosting:cache:1:x", "y"), ("PUBLISH", "other", "1"), ("FLUSHALL",)):
        with pytest.raises(redis.exceptions.NoPermissionError):
            publisher.execute_command(*command)


def test_rules_follow_the_prefix():
    assert "%R~acme:routes" in rules("reader", "acme:")
    assert f"&{channel('acme:')}" in rules("reader", "acme:")
    assert set(ROLES) >= {"reader", "publisher", "panel", "celery"}
