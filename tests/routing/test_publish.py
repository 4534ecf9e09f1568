"""routing.publish: the store-if-newer Lua script and the change announcement."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import redis

from routing.publish import (
    ATTEMPTS,
    PublishContended,
    channel,
    publish_table,
    signature_key,
    stored_version,
    table_key,
)
from routing.signing import key_id, sign, verify
from routing.table import RouteTable
from tests.routing.support import FORGER, NEXT, PUBLISHER, make_table
from tests.support import child_env, repo_root, wait_until

TRUSTED = [PUBLISHER.public_key()]


def set_by_hand(client, value: bytes | str) -> None:
    """Write a value and the publisher's signature of it straight into Redis, no script."""
    raw = value.encode() if isinstance(value, str) else value
    client.mset({table_key(): raw, signature_key(): sign(raw, PUBLISHER)})


def stored(client) -> RouteTable:
    return RouteTable.from_json(client.get(table_key()))


def test_it_stores_a_table_into_an_empty_redis(redis_client):
    assert publish_table(redis_client, make_table(3), signing_key=PUBLISHER) is True
    assert stored(redis_client) == make_table(3)


def test_it_stores_the_contract_shape(redis_client):
    publish_table(redis_client, make_table(3, "b1"), signing_key=PUBLISHER)
    data = json.loads(redis_client.get("hosting:routes"))
    assert data["version"] == 3
    assert data["backends"] == [
        {"name": "b1", "address": "127.0.0.1:9100", "weight": 1, "state": "active"}
    ]


def test_it_replaces_an_older_table(redis_client):
    publish_table(redis_client, make_table(3), signing_key=PUBLISHER)
    assert (
        publish_table(redis_client, make_table(4, "b1", "b2", "b3"), signing_key=PUBLISHER) is True
    )
    assert stored(redis_client).version == 4


def test_an_older_table_never_overwrites_a_newer_one(redis_client):
    publish_table(redis_client, make_table(5, "b1"), signing_key=PUBLISHER)
    assert publish_table(redis_client, make_table(4, "b1", "b2"), signing_key=PUBLISHER) is False
    assert stored(redis_client) == make_table(5, "b1")


def test_the_same_version_twice_changes_nothing(redis_client):
    publish_table(redis_client, make_table(5, "b1"), signing_key=PUBLISHER)
    before = redis_client.get(table_key())
    assert publish_table(redis_client, make_table(5, "b1"), signing_key=PUBLISHER) is False
    assert redis_client.get(table_key()) == before


def test_it_announces_only_the_versions_it_stored(redis_client):
    pubsub = redis_client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(channel())
    wait_until(lambda: redis_client.pubsub_numsub(channel())[0][1] == 1, what="subscription")
    publish_table(redis_client, make_table(2), signing_key=PUBLISHER)
    publish_table(redis_client, make_table(1), signing_key=PUBLISHER)  # refused: not announced
    publish_table(redis_client, make_table(3), signing_key=PUBLISHER)
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
    assert publish_table(redis_client, make_table(1), signing_key=PUBLISHER) is True
    assert stored(redis_client).version == 1


def test_it_keeps_prefixes_apart(redis_client):
    publish_table(redis_client, make_table(7), prefix="a:", signing_key=PUBLISHER)
    assert publish_table(redis_client, make_table(2), prefix="b:", signing_key=PUBLISHER) is True
    assert stored_version(redis_client, "a:", trusted_keys=TRUSTED) == 7
    assert stored_version(redis_client, "b:", trusted_keys=TRUSTED) == 2


def test_stored_version_is_none_for_a_missing_or_unreadable_table(redis_client):
    assert stored_version(redis_client, trusted_keys=TRUSTED) is None
    set_by_hand(redis_client, b"{")
    assert stored_version(redis_client, trusted_keys=TRUSTED) is None
    set_by_hand(redis_client, b'{"version": 5, "backends": []}')
    assert stored_version(redis_client, trusted_keys=TRUSTED) is None


def test_a_well_shaped_newer_table_is_kept_and_its_version_reported(redis_client):
    newer = make_table(40)
    set_by_hand(redis_client, newer.to_json())
    assert publish_table(redis_client, make_table(3), signing_key=PUBLISHER) is False
    assert stored_version(redis_client, trusted_keys=TRUSTED) == 40


def test_it_works_again_after_redis_restarts(redis_server, redis_client):
    # A restarted Redis has forgotten the script; EVALSHA must fall back to loading it.
    publish_table(redis_client, make_table(1), signing_key=PUBLISHER)
    redis_server.stop()
    redis_server.start()
    assert publish_table(redis_client, make_table(2), signing_key=PUBLISHER) is True


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


# --- signed tables ------------------------------------------------------------------------


def signed(client, version: int, *names: str, key=PUBLISHER, **kwargs) -> bool:
    return publish_table(client, make_table(version, *names), signing_key=key, **kwargs)


def forge(client, version: int, line: bytes | None = None) -> bytes:
    """What a tenant with write access to Redis can do: a well-formed table with a huge version
    and an attacker's backend, signed by a key nobody trusts (or ``line``), then PUBLISH."""
    raw = make_table(version, "attacker").to_json().encode()
    client.set(table_key(), raw)
    client.set(signature_key(), line if line is not None else sign(raw, FORGER))
    client.publish(channel(), str(version))
    return raw


class Interloper:
    """A client through which another writer gets in between the publisher's read (MGET) and
    its write, once per entry of ``writes``; everything else goes to the real client."""

    def __init__(self, client: redis.Redis, writes) -> None:
        self.client = client
        self.writes = list(writes)

    def mget(self, keys):
        values = self.client.mget(keys)
        if self.writes:
            self.writes.pop(0)()
        return values

    def register_script(self, script):
        return self.client.register_script(script)


def test_a_signed_table_is_stored_with_the_signature_of_its_exact_bytes(redis_client):
    assert signed(redis_client, 3) is True
    raw = redis_client.get(table_key())
    assert RouteTable.from_json(raw) == make_table(3)
    line = redis_client.get(signature_key())
    assert verify(raw, line, [PUBLISHER.public_key()]) == key_id(PUBLISHER.public_key())


def test_a_forged_table_with_a_huge_version_never_blocks_the_next_real_publish(redis_client):
    signed(redis_client, 3)
    forge(redis_client, 10**15)
    pubsub = redis_client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(channel())
    wait_until(lambda: redis_client.pubsub_numsub(channel())[0][1] == 1, what="subscription")
    assert signed(redis_client, 4) is True
    assert stored(redis_client) == make_table(4)
    announced = wait_until(lambda: pubsub.get_message(timeout=0.1), what="the announcement")
    assert announced["data"] == b"4"
    pubsub.close()


@pytest.mark.parametrize("line", [b"", b"ed25519 garbage", None])
def test_a_table_whose_signature_was_removed_or_spoiled_is_replaced(redis_client, line):
    signed(redis_client, 5)
    raw = make_table(9, "attacker").to_json().encode()
    redis_client.set(table_key(), raw)
    if line is None:
        redis_client.delete(signature_key())
    else:
        redis_client.set(signature_key(), line)
    assert signed(redis_client, 5) is True
    assert stored(redis_client) == make_table(5)


def test_a_genuine_table_under_a_stolen_signature_line_is_replaced(redis_client):
    # A signature that verifies for another table of ours does not make this one count.
    signed(redis_client, 5)
    line = redis_client.get(signature_key())
    redis_client.set(table_key(), make_table(50, "attacker").to_json())
    redis_client.set(signature_key(), line)
    assert signed(redis_client, 6) is True
    assert stored(redis_client) == make_table(6)


def test_a_validly_signed_newer_table_is_kept(redis_client):
    signed(redis_client, 40)
    assert signed(redis_client, 3) is False
    assert stored(redis_client) == make_table(40)
    assert stored_version(redis_client, trusted_keys=[PUBLISHER.public_key()]) == 40


def test_a_replayed_older_signed_table_never_overwrites_a_newer_one(redis_client):
    signed(redis_client, 5, "b1")
    assert signed(redis_client, 4, "b1", "b2") is False
    assert stored(redis_client) == make_table(5, "b1")


def test_the_same_signed_version_twice_changes_nothing(redis_client):
    signed(redis_client, 5)
    before = redis_client.mget([table_key(), signature_key()])
    assert signed(redis_client, 5) is False
    assert redis_client.mget([table_key(), signature_key()]) == before


def test_stored_version_counts_only_a_verified_table(redis_client):
    forge(redis_client, 10**15)
    assert stored_version(redis_client, trusted_keys=[PUBLISHER.public_key()]) is None
    # Trusting the forger's key, it would count: only the signature tells them apart.
    assert stored_version(redis_client, trusted_keys=[FORGER.public_key()]) == 10**15


def test_a_newer_table_written_between_reading_and_writing_is_kept(redis_client):
    # Another publisher stores version 9 after this one read version 5 and judged 7 newer.
    signed(redis_client, 5)
    racing = Interloper(redis_client, [lambda: signed(redis_client, 9)])
    assert signed(racing, 7) is False
    assert stored(redis_client) == make_table(9)


def test_a_forgery_written_between_reading_and_writing_is_replaced(redis_client):
    signed(redis_client, 5)
    racing = Interloper(redis_client, [lambda: forge(redis_client, 10**15)])
    assert signed(racing, 7) is True
    assert stored(redis_client) == make_table(7)


def test_it_gives_up_with_a_redis_error_when_the_table_never_stops_changing(redis_client):
    signed(redis_client, 5)
    writes = [lambda i=i: forge(redis_client, 10**15 + i) for i in range(ATTEMPTS)]
    with pytest.raises(PublishContended, match=f"{ATTEMPTS} publishes") as caught:
        signed(Interloper(redis_client, writes), 7)
    assert isinstance(caught.value, redis.RedisError)
    assert stored(redis_client).backends[0].name == "attacker"  # the last forgery, unrouted


def test_a_rotation_re_signs_the_same_version_with_the_new_key(redis_client):
    signed(redis_client, 5)
    both = [PUBLISHER.public_key(), NEXT.public_key()]
    assert signed(redis_client, 5, key=NEXT, trusted_keys=both) is True
    raw, line = redis_client.mget([table_key(), signature_key()])
    assert RouteTable.from_json(raw) == make_table(5)
    assert verify(raw, line, both) == key_id(NEXT.public_key())
    # Re-signed once: the next periodic republish changes nothing.
    assert signed(redis_client, 5, key=NEXT, trusted_keys=both) is False


def test_a_rotated_publisher_keeps_a_newer_table_signed_by_the_old_trusted_key(redis_client):
    signed(redis_client, 9)
    both = [PUBLISHER.public_key(), NEXT.public_key()]
    assert signed(redis_client, 5, key=NEXT, trusted_keys=both) is False
    assert stored(redis_client) == make_table(9)


@pytest.mark.parametrize("key", [None, "ed25519:not-a-private-key", PUBLISHER.public_key()])
def test_a_publish_without_a_signing_key_is_refused(redis_client, key):
    signed(redis_client, 5)
    with pytest.raises(TypeError, match="signing_key must be an Ed25519 private key"):
        publish_table(redis_client, make_table(6), signing_key=key)
    assert stored(redis_client) == make_table(5)


@pytest.mark.parametrize("key", [PUBLISHER, NEXT])
def test_a_table_key_of_another_type_is_replaced(redis_client, key):
    redis_client.rpush(table_key(), "x")
    redis_client.sadd(signature_key(), "y")
    assert publish_table(redis_client, make_table(2), signing_key=key) is True
    assert stored(redis_client) == make_table(2)


def test_a_signing_key_its_readers_would_not_trust_is_refused(redis_client):
    with pytest.raises(ValueError, match="not among the trusted keys"):
        signed(redis_client, 1, key=NEXT, trusted_keys=[PUBLISHER.public_key()])
    assert redis_client.get(table_key()) is None
