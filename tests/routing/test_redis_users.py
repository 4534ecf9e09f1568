"""Redis access control (scripts/redis_users.py) on a real redis-server started with its ACL
file: readers read and subscribe only, each fleet member writes its own heartbeat and nothing
else, the publisher publishes, nobody else writes the table or announces on its channel."""

from __future__ import annotations

import asyncio

import pytest
import redis

from routing.certs import CERTS, CHALLENGES
from routing.fleet import Heartbeat, Member, read_fleet
from routing.publish import channel, publish_table, signature_key, table_key
from routing.subscriber import RouteSubscriber
from scripts.redis_users import (
    ROLES,
    celery_prefix,
    ensure_passwords,
    main,
    member_user,
    rules,
    urls,
    write_acl_file,
)
from tests.routing.support import PUBLISHER, make_table
from tests.support import RedisServer

MEMBERS = (("node", "b1"), ("node", "b2"), ("proxy", "p1"), ("proxy", "p2"))


@pytest.fixture(scope="module")
def acl_redis(tmp_path_factory):
    var_dir = tmp_path_factory.mktemp("acl-var")
    acl = write_acl_file(var_dir, members=MEMBERS)
    server = RedisServer(args=("--aclfile", str(acl))).start()

    role_urls = urls(server.url, ensure_passwords(var_dir, MEMBERS))
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
        ("SET", "hosting:fleet:node:b1", "{}"),
        ("SET", "hosting:fleet:proxy:p1/0", "{}"),
    ],
    ids=lambda c: " ".join(c[:2]),
)
def test_a_readers_credentials_can_do_nothing_else(acl_redis, command):
    _, role_urls, _ = acl_redis
    with pytest.raises(redis.exceptions.NoPermissionError):
        client(role_urls["reader"]).execute_command(*command)


def test_a_member_writes_its_own_heartbeat_and_removes_it_on_stop(acl_redis):
    _, role_urls, _ = acl_redis
    panel = client(role_urls["panel"])  # the fleet page reads with the panel's user

    async def beat(role: str, name: str, url: str) -> tuple[bool, set, set]:
        heartbeat = Heartbeat(url, role=role, name=name, report=dict, interval=5, ttl=15)
        await heartbeat.start()
        heartbeat._task.cancel()  # beats written by hand below
        try:
            written = await heartbeat.beat()
            seen = {m.name for m in read_fleet(panel).members}
        finally:
            await heartbeat.stop()
        return written, seen, {m.name for m in read_fleet(panel).members}

    assert asyncio.run(beat("node", "b1", role_urls["node-b1"])) == (True, {"b1"}, set())
    assert asyncio.run(beat("proxy", "p1/3", role_urls["proxy-p1"])) == (True, {"p1/3"}, set())
    # The plain reader routes, but cannot report itself.
    assert asyncio.run(beat("node", "b1", role_urls["reader"]))[0] is False
    panel.close()


@pytest.mark.parametrize(
    ("user", "command"),
    [
        ("node-b1", ("SET", "hosting:fleet:node:b2", "{}")),  # another node's heartbeat
        ("node-b1", ("SET", "hosting:fleet:node:b1x", "{}")),
        ("node-b1", ("SET", "hosting:fleet:proxy:p1/0", "{}")),
        ("node-b1", ("DEL", "hosting:fleet:node:b1")),  # not even its own: it overwrites
        ("node-b1", ("GET", "hosting:fleet:node:b2")),
        ("node-b1", ("MGET", "hosting:fleet:node:b2")),
        ("node-b1", ("SET", "hosting:routes", "{}")),  # the route table
        ("node-b1", ("SET", "hosting:routes:sig", "x")),
        ("node-b1", ("PUBLISH", "hosting:routes:changed", "9")),
        ("node-b1", ("EXPIRE", "hosting:fleet:node:b2", "1")),
        ("node-b1", ("RENAME", "hosting:fleet:node:b1", "hosting:routes")),
        ("proxy-p1", ("SET", "hosting:fleet:proxy:p2/0", "{}")),  # another proxy's worker
        ("proxy-p1", ("SET", "hosting:fleet:proxy:p1", "{}")),
        ("proxy-p1", ("SET", "hosting:fleet:node:b1", "{}")),
        ("proxy-p1", ("SET", "hosting:routes", "{}")),
    ],
    ids=lambda v: v if isinstance(v, str) else " ".join(v[:2]),
)
def test_a_member_cannot_write_another_members_heartbeat_or_the_route_table(
    acl_redis, user, command
):
    _, role_urls, _ = acl_redis
    member = client(role_urls[user])
    with pytest.raises(redis.exceptions.NoPermissionError):
        member.execute_command(*command)
    member.close()


def test_a_member_is_a_reader_besides(acl_redis):
    _, role_urls, _ = acl_redis
    publisher = client(role_urls["publisher"])
    assert publish_table(publisher, make_table(10**15 + 5), signing_key=PUBLISHER)
    member = client(role_urls["proxy-p2"])
    raw, _sig = member.mget([table_key(), signature_key()])
    assert raw is not None
    member.set("hosting:fleet:proxy:p2/0", Member(name="p2/0", role="proxy").to_json(), px=50)
    for c in (member, publisher):
        c.close()


@pytest.mark.parametrize("role", ["panel", "celery"])
def test_the_panel_and_celery_may_read_the_table_but_not_write_it(acl_redis, role):
    _, role_urls, _ = acl_redis
    user = client(role_urls[role])
    user.mget([table_key(), signature_key()])
    user.set("hosting:cache:1:x", "y")
    user.lpush("hosting:celery:celery", "task")
    for command in (
        ("SET", table_key(), "{}"),
        ("SET", signature_key(), "x"),
        ("FLUSHALL",),
        ("SET", "hosting:fleet:node:b1", "{}"),  # the fleet is read only
    ):
        with pytest.raises(redis.exceptions.NoPermissionError):
            user.execute_command(*command)


@pytest.mark.parametrize("role", ["panel", "celery"])
def test_the_panel_and_celery_use_only_their_own_channels(acl_redis, role):
    """The documents' channels and Celery's (the commands a worker and beat send, as seen on a
    real one with MONITOR: remote control and worker events); not the route table's."""
    _, role_urls, _ = acl_redis
    user = client(role_urls[role])
    celery = celery_prefix()
    for name in (CERTS.channel("hosting:"), CHALLENGES.channel("hosting:")):
        user.publish(name, "1")
    for name in ("/0.celery.pidbox", "/0.celeryev/worker.heartbeat", "/3.celeryev/worker.online"):
        user.publish(celery + name, "{}")
    pubsub = user.pubsub()
    pubsub.psubscribe(celery + "/0.celery.pidbox", celery + "/0.celeryev/worker.*")
    pubsub.psubscribe(celery + "/15.celery.pidbox")
    assert [pubsub.get_message(timeout=5)["type"] for _ in range(3)] == ["psubscribe"] * 3
    pubsub.close()
    for command in (("PUBLISH", channel("hosting:"), "99"), ("PUBLISH", "elsewhere", "1")):
        with pytest.raises(redis.exceptions.NoPermissionError):
            user.execute_command(*command)
    for verb, name in (
        ("subscribe", channel("hosting:")),
        ("psubscribe", celery + "/0.celery.*"),  # a pattern not listed as such
        ("psubscribe", "hosting:*"),
    ):
        pubsub = user.pubsub()
        with pytest.raises(redis.exceptions.NoPermissionError):
            getattr(pubsub, verb)(name)
            pubsub.get_message(timeout=5)
        pubsub.close()
    user.close()


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


def test_member_users_are_named_after_the_member_and_bad_names_refused():
    assert member_user("node", "b1") == "node-b1"
    assert member_user("proxy", "edge-1") == "proxy-edge-1"
    for role, name in (("db", "x"), ("node", "b*"), ("node", "a b"), ("node", "")):
        with pytest.raises(ValueError):
            member_user(role, name)


def test_the_command_prints_a_user_per_member(capsys):
    assert main(["acl", "--prefix", "acme:", "--node", "b1", "--proxy", "p1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    node = next(line for line in lines if line.startswith("ACL SETUSER node-b1 reset "))
    assert node.endswith("%W~acme:fleet:node:b1 +set >PASSWORD")
    proxy = next(line for line in lines if line.startswith("ACL SETUSER proxy-p1 reset "))
    assert "%W~acme:fleet:proxy:p1/* +set" in proxy
    assert main(["acl", "--node", "b*"]) == 2
    assert "glob" in capsys.readouterr().err
