"""routing.publish: the store-if-newer Lua script and the change announcement."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from routing.publish import channel, publish_table, stored_version, table_key
from routing.table import RouteTable
from tests.routing.support import make_table
from tests.support import child_env, repo_root, wait_until


def stored(client) -> RouteTable:
    return RouteTable.from_json(client.get(table_key()))


def test_it_stores_a_table_into_an_empty_redis(redis_client):
    assert publish_table(redis_client, make_table(3)) is True
    assert stored(redis_client) == make_table(3)


def test_it_stores_the_contract_shape(redis_client):
    publish_table(redis_client, make_table(3, "b1"))
    data = json.loads(redis_client.get("hosting:routes"))
    assert data["version"] == 3
    assert data["backends"] == [
        {"name": "b1", "address": "127.0.0.1:9100", "weight": 1, "state": "active"}
    ]


def test_it_replaces_an_older_table(redis_client):
    publish_table(redis_client, make_table(3))
    assert publish_table(redis_client, make_table(4, "b1", "b2", "b3")) is True
    assert stored(redis_client).version == 4


def test_an_older_table_never_overwrites_a_newer_one(redis_client):
    publish_table(redis_client, make_table(5, "b1"))
    assert publish_table(redis_client, make_table(4, "b1", "b2")) is False
    assert stored(redis_client) == make_table(5, "b1")


def test_the_same_version_twice_changes_nothing(redis_client):
    publish_table(redis_client, make_table(5, "b1"))
    before = redis_client.get(table_key())
    assert publish_table(redis_client, make_table(5, "b1")) is False
    assert redis_client.get(table_key()) == before


def test_it_announces_only_the_versions_it_stored(redis_client):
    pubsub = redis_client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(channel())
    wait_until(lambda: redis_client.pubsub_numsub(channel())[0][1] == 1, what="subscription")
    publish_table(redis_client, make_table(2))
    publish_table(redis_client, make_table(1))  # refused: not announced
    publish_table(redis_client, make_table(3))
    messages = []

    def two_announcements() -> bool:
        message = pubsub.get_message(timeout=0.1)
        if message is not None:
            messages.append(message["data"])
        return len(messages) == 2

    wait_until(two_announcements, what="two announcements")
    assert messages == [b"2", b"3"]
    assert pubsub.get_message(timeout=0.2) is None
    pubsub.close()


@pytest.mark.parametrize(
    "junk",
    [
        b"not json",
        b"[1, 2]",
        b'{"version": "9"}',
        b'{"backends": []}',
        b"\xff\xfe",
        b'{"version": 999999, "backends": "all of them"}',
        b'{"version": 999999, "algorithm": "x"}',
    ],
)
def test_it_replaces_a_stored_value_that_has_no_numeric_version(redis_client, junk):
    redis_client.set(table_key(), junk)
    assert publish_table(redis_client, make_table(1)) is True
    assert stored(redis_client).version == 1


def test_it_keeps_prefixes_apart(redis_client):
    publish_table(redis_client, make_table(7), prefix="a:")
    assert publish_table(redis_client, make_table(2), prefix="b:") is True
    assert stored_version(redis_client, "a:") == 7
    assert stored_version(redis_client, "b:") == 2


def test_stored_version_is_none_for_a_missing_or_unreadable_table(redis_client):
    assert stored_version(redis_client) is None
    redis_client.set(table_key(), b"{")
    assert stored_version(redis_client) is None
    redis_client.set(table_key(), b'{"version": 5, "backends": []}')
    assert stored_version(redis_client) is None


def test_a_well_shaped_newer_table_is_kept_and_its_version_reported(redis_client):
    newer = make_table(40)
    redis_client.set(table_key(), newer.to_json())
    assert publish_table(redis_client, make_table(3)) is False
    assert stored_version(redis_client) == 40


def test_it_works_again_after_redis_restarts(redis_server, redis_client):
    # A restarted Redis has forgotten the script; EVALSHA must fall back to loading it.
    publish_table(redis_client, make_table(1))
    redis_server.stop()
    redis_server.start()
    assert publish_table(redis_client, make_table(2)) is True


def test_the_publisher_and_subscriber_import_neither_django_nor_settings():
    code = (
        "import sys, routing.publish, routing.subscriber; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'django', 'panel'}); "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=repo_root(),
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
