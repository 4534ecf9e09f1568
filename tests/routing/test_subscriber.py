"""routing.subscriber: keeps the newest valid table through changes, junk and Redis outages.

Each test runs its own event loop with ``asyncio.run`` and its own redis-server.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable

import pytest

from routing.publish import channel, publish_table, signature_key, table_key
from routing.signing import frame, key_id, sign, unframe, verify
from routing.subscriber import REFUSAL_REASONS, RouteSubscriber
from routing.table import RouteTable
from tests.routing.support import FORGER, NEXT, PUBLISHER, make_table

# Short enough that tests relying on the poll finish quickly, long enough to be a real poll.
POLL = 0.2


async def eventually(predicate: Callable[[], object], timeout: float = 10.0, what: str = ""):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what or predicate}")
        await asyncio.sleep(0.01)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


TRUSTED = [PUBLISHER.public_key()]


def set_by_hand(client, value: bytes | str) -> None:
    """Write a value and the publisher's signature of it straight into Redis (no script, no
    announcement): what a second writer holding the key would do."""
    raw = value.encode() if isinstance(value, str) else value
    client.mset({table_key(): raw, signature_key(): sign(raw, PUBLISHER)})


def signed_file(value: bytes | str) -> bytes:
    """A state file as a reader writes it: the publisher's signature line, then the table."""
    raw = value.encode() if isinstance(value, str) else value
    return frame(raw, sign(raw, PUBLISHER))


def subscriber(redis_server, **kwargs) -> RouteSubscriber:
    kwargs.setdefault("trusted_keys", TRUSTED)
    kwargs.setdefault("poll_interval", POLL)
    kwargs.setdefault("timeout", 1.0)
    return RouteSubscriber(redis_server.url, **kwargs)


def test_it_holds_the_table_present_at_start(redis_server, redis_client):
    publish_table(redis_client, make_table(4), signing_key=PUBLISHER)

    async def scenario():
        sub = subscriber(redis_server)
        await sub.start()
        try:
            assert sub.table == make_table(4)
            assert sub.stats.connected
            assert sub.stats.source == "redis"
        finally:
            await sub.stop()

    run(scenario())


def test_it_takes_each_published_change(redis_server, redis_client):
    async def scenario():
        # A poll interval far longer than the test: only the announcement can deliver the change.
        sub = subscriber(redis_server, poll_interval=60)
        await sub.start()
        try:
            assert sub.table is None
            for version in (1, 2, 3):
                publish_table(
                    redis_client,
                    make_table(version, *[f"b{i}" for i in range(version)]),
                    signing_key=PUBLISHER,
                )
                table = await sub.wait_for_version(version, timeout=10)
                assert table.version == version
            assert [b.name for b in sub.table.backends] == ["b0", "b1", "b2"]
        finally:
            await sub.stop()

    run(scenario())


def test_it_finds_a_change_without_an_announcement_by_polling(redis_server, redis_client):
    async def scenario():
        sub = subscriber(redis_server)
        await sub.start()
        try:
            set_by_hand(redis_client, make_table(9).to_json())  # SET without PUBLISH
            assert (await sub.wait_for_version(9, timeout=10)).version == 9
        finally:
            await sub.stop()

    run(scenario())


def test_it_ignores_a_lower_version_written_by_hand_and_counts_it(redis_server, redis_client):
    publish_table(redis_client, make_table(5, "b1"), signing_key=PUBLISHER)

    async def scenario():
        sub = subscriber(redis_server)
        await sub.start()
        try:
            set_by_hand(redis_client, make_table(3, "b9").to_json())
            redis_client.publish("hosting:routes:changed", "3")
            await eventually(lambda: sub.stats.lower == 1, what="the lower version counted")
            # Seen again on later polls, the same value is not counted again.
            polls = 3
            await asyncio.sleep(POLL * polls)
            assert sub.stats.lower == 1
            assert sub.stats.rejected == 1
            assert sub.table == make_table(5, "b1")
        finally:
            await sub.stop()

    run(scenario())


@pytest.mark.parametrize(
    "junk",
    [
        b"{not json",
        b'{"version": 6}',
        b'{"version": -1, "algorithm": "x", "backends": []}',
        json.dumps({"version": 6, "algorithm": "x", "backends": [{"name": "b1"}]}).encode(),
    ],
)
def test_it_ignores_a_malformed_table_and_counts_it(redis_server, redis_client, junk):
    publish_table(redis_client, make_table(5, "b1"), signing_key=PUBLISHER)

    async def scenario():
        sub = subscriber(redis_server)
        await sub.start()
        try:
            set_by_hand(redis_client, junk)
            await eventually(lambda: sub.stats.malformed == 1, what="the malformed table counted")
            assert sub.table == make_table(5, "b1")
            # A valid newer table is taken again afterwards.
            publish_table(redis_client, make_table(7, "b2"), signing_key=PUBLISHER)
            assert (await sub.wait_for_version(7, timeout=10)) == make_table(7, "b2")
            assert sub.stats.malformed == 1
        finally:
            await sub.stop()

    run(scenario())


def test_it_keeps_the_last_good_table_when_redis_loses_its_data(redis_server, redis_client):
    publish_table(redis_client, make_table(5), signing_key=PUBLISHER)

    async def scenario():
        sub = subscriber(redis_server)
        await sub.start()
        try:
            redis_client.flushall()
            await eventually(lambda: sub.stats.missing, what="the table reported missing")
            assert sub.table == make_table(5)
            assert sub.stats.rejected == 0
            # The periodic republish puts the same version back: nothing changes, age resets.
            publish_table(redis_client, make_table(5), signing_key=PUBLISHER)
            await eventually(lambda: not sub.stats.missing, what="the table back")
            assert sub.table == make_table(5)
        finally:
            await sub.stop()

    run(scenario())


def test_it_keeps_the_table_while_redis_is_down_and_reconnects(redis_server, redis_client):
    publish_table(redis_client, make_table(2), signing_key=PUBLISHER)

    async def scenario():
        sub = subscriber(redis_server, backoff_max=0.2)
        await sub.start()
        try:
            redis_server.stop()
            await eventually(lambda: not sub.stats.connected, what="the loss noticed")
            assert sub.table == make_table(2)
            assert sub.stats.last_error
            redis_server.start()
            # The restarted Redis is empty (no persistence); a publisher repairs it.
            publish_table(redis_client, make_table(3), signing_key=PUBLISHER)
            assert (await sub.wait_for_version(3, timeout=10)).version == 3
            assert sub.stats.connected
            assert sub.stats.reconnects >= 1
        finally:
            await sub.stop()

    run(scenario())


def test_it_starts_while_redis_is_down_and_catches_up(redis_server, redis_client):
    redis_server.stop()

    async def scenario():
        sub = subscriber(redis_server, backoff_max=0.2)
        await sub.start(wait=0.5)
        try:
            assert sub.table is None
            assert not sub.stats.connected
            redis_server.start()
            publish_table(redis_client, make_table(1), signing_key=PUBLISHER)
            assert (await sub.wait_for_version(1, timeout=10)).version == 1
        finally:
            await sub.stop()

    run(scenario())


def test_it_keeps_each_new_table_in_the_state_file(redis_server, redis_client, tmp_path):
    state = tmp_path / "state" / "routes.json"

    async def scenario():
        sub = subscriber(redis_server, state_file=state)
        await sub.start()
        try:
            publish_table(redis_client, make_table(8, "b3"), signing_key=PUBLISHER)
            await sub.wait_for_version(8, timeout=10)
        finally:
            await sub.stop()

    run(scenario())
    assert json.loads(unframe(state.read_bytes())[0])["version"] == 8


def test_it_starts_from_the_state_file_when_redis_is_down(redis_server, tmp_path):
    state = tmp_path / "routes.json"
    state.write_bytes(signed_file(make_table(6, "b4").to_json()))
    redis_server.stop()
    seen = []

    async def scenario():
        sub = subscriber(redis_server, state_file=state, on_change=seen.append)
        await sub.start(wait=0.5)
        try:
            assert sub.table == make_table(6, "b4")
            assert sub.stats.source == "state-file"
            assert not sub.stats.connected
        finally:
            await sub.stop()

    run(scenario())
    assert seen == [make_table(6, "b4")]


def test_a_newer_table_in_redis_replaces_the_state_file_one(redis_server, redis_client, tmp_path):
    state = tmp_path / "routes.json"
    state.write_bytes(signed_file(make_table(6, "b4").to_json()))
    publish_table(redis_client, make_table(7, "b5"), signing_key=PUBLISHER)

    async def scenario():
        sub = subscriber(redis_server, state_file=state)
        await sub.start()
        try:
            assert (await sub.wait_for_version(7, timeout=10)) == make_table(7, "b5")
            assert sub.stats.source == "redis"
        finally:
            await sub.stop()

    run(scenario())


def test_an_older_table_in_redis_does_not_replace_the_state_file_one(
    redis_server, redis_client, tmp_path
):
    state = tmp_path / "routes.json"
    state.write_bytes(signed_file(make_table(6, "b4").to_json()))
    publish_table(redis_client, make_table(5, "b5"), signing_key=PUBLISHER)

    async def scenario():
        sub = subscriber(redis_server, state_file=state)
        await sub.start()
        try:
            await eventually(lambda: sub.stats.lower == 1, what="the lower version counted")
            assert sub.table == make_table(6, "b4")
        finally:
            await sub.stop()

    run(scenario())


def test_it_ignores_a_malformed_state_file(redis_server, tmp_path):
    state = tmp_path / "routes.json"
    state.write_bytes(signed_file("{truncated"))
    redis_server.stop()

    async def scenario():
        sub = subscriber(redis_server, state_file=state)
        await sub.start(wait=0.5)
        try:
            assert sub.table is None
        finally:
            await sub.stop()

    run(scenario())


def test_it_calls_on_change_once_per_new_version(redis_server, redis_client):
    seen: list[int] = []

    async def on_change(table):
        seen.append(table.version)

    async def scenario():
        sub = subscriber(redis_server, on_change=on_change)
        await sub.start()
        try:
            for version in (1, 1, 2, 2, 3):
                publish_table(redis_client, make_table(version), signing_key=PUBLISHER)
            await sub.wait_for_version(3, timeout=10)
            await asyncio.sleep(POLL * 2)  # let later polls re-read the same table
        finally:
            await sub.stop()

    run(scenario())
    assert seen == sorted(set(seen))
    assert seen[-1] == 3


def test_a_failing_on_change_does_not_stop_the_subscriber(redis_server, redis_client, caplog):
    def on_change(table):
        raise RuntimeError("callback bug")

    async def scenario():
        sub = subscriber(redis_server, on_change=on_change)
        await sub.start()
        try:
            publish_table(redis_client, make_table(1), signing_key=PUBLISHER)
            await sub.wait_for_version(1, timeout=10)
            publish_table(redis_client, make_table(2), signing_key=PUBLISHER)
            await sub.wait_for_version(2, timeout=10)
        finally:
            await sub.stop()

    run(scenario())
    assert "on_change callback failed" in caplog.text


def test_wait_for_version_times_out(redis_server):
    async def scenario():
        sub = subscriber(redis_server)
        await sub.start()
        try:
            with pytest.raises(TimeoutError):
                await sub.wait_for_version(1, timeout=0.3)
        finally:
            await sub.stop()

    run(scenario())


def test_it_rejects_a_poll_interval_that_is_not_positive(redis_server):
    with pytest.raises(ValueError, match="positive"):
        RouteSubscriber(redis_server.url, poll_interval=0, trusted_keys=TRUSTED)


def test_a_callback_that_hangs_does_not_stop_the_subscriber(redis_server, redis_client):
    async def on_change(table):
        if table.version == 1:
            await asyncio.Event().wait()  # never set

    async def scenario():
        sub = subscriber(redis_server, on_change=on_change, timeout=0.3)
        await sub.start()
        try:
            publish_table(redis_client, make_table(1), signing_key=PUBLISHER)
            await sub.wait_for_version(1, timeout=10)
            publish_table(redis_client, make_table(2), signing_key=PUBLISHER)
            assert (await sub.wait_for_version(2, timeout=10)).version == 2
        finally:
            await sub.stop()

    run(scenario())


def test_it_can_be_started_again_after_stopping(redis_server, redis_client):
    publish_table(redis_client, make_table(1), signing_key=PUBLISHER)

    async def scenario():
        sub = subscriber(redis_server)
        await sub.start()
        await sub.stop()
        publish_table(redis_client, make_table(2), signing_key=PUBLISHER)
        await sub.start()
        try:
            assert (await sub.wait_for_version(2, timeout=10)).version == 2
        finally:
            await sub.stop()

    run(scenario())


def test_age_counts_from_the_last_time_redis_confirmed_the_table(
    redis_server, redis_client, tmp_path
):
    state = tmp_path / "routes.json"
    state.write_bytes(signed_file(make_table(4).to_json()))
    redis_server.stop()

    async def scenario():
        sub = subscriber(redis_server, state_file=state, backoff_max=0.2)
        await sub.start(wait=0.5)
        try:
            assert sub.stats.age is None  # from the state file, not confirmed by Redis
            redis_server.start()
            publish_table(redis_client, make_table(4), signing_key=PUBLISHER)
            await eventually(lambda: sub.stats.age is not None, what="Redis to confirm it")
            assert sub.stats.source == "redis"
            confirmed = sub.stats.age
            redis_client.flushall()
            await eventually(lambda: sub.stats.missing, what="the table reported missing")
            await eventually(lambda: sub.stats.age > confirmed + POLL, what="the age to grow")
        finally:
            await sub.stop()

    run(scenario())


# --- signed tables ------------------------------------------------------------------------


def signed_subscriber(redis_server, **kwargs) -> RouteSubscriber:
    kwargs.setdefault("trusted_keys", TRUSTED)
    return subscriber(redis_server, **kwargs)


def publish(client, version: int, *names: str, key=PUBLISHER, **kwargs) -> bool:
    return publish_table(client, make_table(version, *names), signing_key=key, **kwargs)


def forge(client, version: int, line: bytes | None = None) -> None:
    """A tenant with write access to Redis: a well-formed table with a huge version and an
    attacker's backend, signed by a key nobody trusts (or carrying ``line``), then PUBLISH."""
    raw = make_table(version, "attacker").to_json().encode()
    client.set(table_key(), raw)
    if line is None:
        client.set(signature_key(), sign(raw, FORGER))
    elif line == b"":
        client.delete(signature_key())
    else:
        client.set(signature_key(), line)
    client.publish(channel(), str(version))


def state_file_table(path) -> tuple[bytes, bytes | None]:
    return unframe(path.read_bytes())


def test_it_takes_signed_tables_and_names_their_signer(redis_server, redis_client):
    publish(redis_client, 4)

    async def scenario():
        sub = signed_subscriber(redis_server)
        await sub.start()
        try:
            assert sub.table == make_table(4)
            publish(redis_client, 5)
            assert (await sub.wait_for_version(5, timeout=10)) == make_table(5)
            assert sub.stats.verified
            assert sub.stats.signer == key_id(PUBLISHER.public_key())
            assert sub.stats.refused == dict.fromkeys(REFUSAL_REASONS, 0)
        finally:
            await sub.stop()

    run(scenario())


def test_a_forged_table_is_ignored_counted_and_never_saved(redis_server, redis_client, tmp_path):
    state = tmp_path / "routes.state"
    publish(redis_client, 4)

    async def scenario():
        sub = signed_subscriber(redis_server, state_file=state)
        await sub.start()
        try:
            saved = state.read_bytes()
            forge(redis_client, 10**15)
            await eventually(lambda: sub.stats.bad_signature == 1, what="the forgery counted")
            await asyncio.sleep(POLL * 3)  # later polls see it again: not counted again
            assert sub.stats.bad_signature == 1
            assert sub.stats.rejected == 1
            assert sub.table == make_table(4)
            assert all(b.name != "attacker" for b in sub.table.backends)
            assert state.read_bytes() == saved
            # The next real publish replaces the forgery and reaches the reader.
            assert publish(redis_client, 5) is True
            assert (await sub.wait_for_version(5, timeout=10)) == make_table(5)
        finally:
            await sub.stop()

    run(scenario())
    raw, line = state_file_table(state)
    assert RouteTable.from_json(raw) == make_table(5)
    assert verify(raw, line, TRUSTED)


def test_an_unsigned_table_is_refused_as_unsigned(redis_server, redis_client):
    publish(redis_client, 4)

    async def scenario():
        sub = signed_subscriber(redis_server)
        await sub.start()
        try:
            forge(redis_client, 9, line=b"")
            await eventually(lambda: sub.stats.unsigned == 1, what="the unsigned table counted")
            assert sub.table == make_table(4)
            assert sub.stats.refused["unsigned"] == 1
        finally:
            await sub.stop()

    run(scenario())


def test_a_table_under_a_signature_line_copied_from_another_is_refused(redis_server, redis_client):
    publish(redis_client, 4)

    async def scenario():
        sub = signed_subscriber(redis_server)
        await sub.start()
        try:
            forge(redis_client, 9, line=redis_client.get(signature_key()))
            await eventually(lambda: sub.stats.bad_signature == 1, what="the copy counted")
            assert sub.table == make_table(4)
        finally:
            await sub.stop()

    run(scenario())


def test_a_replayed_older_signed_table_is_refused_by_version(redis_server, redis_client):
    old = make_table(3, "b9")
    old_raw = old.to_json().encode()
    old_line = sign(old_raw, PUBLISHER)
    publish(redis_client, 5, "b1")

    async def scenario():
        sub = signed_subscriber(redis_server)
        await sub.start()
        try:
            redis_client.mset({table_key(): old_raw, signature_key(): old_line})
            redis_client.publish(channel(), "3")
            await eventually(lambda: sub.stats.lower == 1, what="the replay counted")
            assert sub.table == make_table(5, "b1")
            assert sub.stats.bad_signature == 0
        finally:
            await sub.stop()

    run(scenario())


def test_the_state_file_holds_the_table_and_its_signature(redis_server, redis_client, tmp_path):
    state = tmp_path / "state" / "routes.state"

    async def scenario():
        sub = signed_subscriber(redis_server, state_file=state)
        await sub.start()
        try:
            publish(redis_client, 8, "b3")
            await sub.wait_for_version(8, timeout=10)
        finally:
            await sub.stop()

    run(scenario())
    assert state.read_bytes() == frame(*redis_client.mget([table_key(), signature_key()]))


def test_it_starts_from_a_signed_state_file_when_redis_is_down(redis_server, tmp_path):
    state = tmp_path / "routes.state"
    raw = make_table(6, "b4").to_json().encode()
    state.write_bytes(frame(raw, sign(raw, PUBLISHER)))
    redis_server.stop()

    async def scenario():
        sub = signed_subscriber(redis_server, state_file=state)
        await sub.start(wait=0.5)
        try:
            assert sub.table == make_table(6, "b4")
            assert sub.stats.source == "state-file"
            assert sub.stats.signer == key_id(PUBLISHER.public_key())
        finally:
            await sub.stop()

    run(scenario())


def tampered(raw: bytes) -> bytes:
    return raw.replace(b"127.0.0.1:9100", b"127.0.0.1:6666")


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (lambda raw: frame(tampered(raw), sign(raw, PUBLISHER)), "bad_signature"),
        (lambda raw: frame(raw, sign(raw, FORGER)), "bad_signature"),
        (lambda raw: raw, "unsigned"),
        (lambda raw: frame(b"{truncated", sign(b"{truncated", PUBLISHER)), "malformed"),
    ],
    ids=["tampered", "forged", "unsigned", "signed-junk"],
)
def test_a_state_file_that_does_not_verify_is_ignored(redis_server, tmp_path, content, reason):
    state = tmp_path / "routes.state"
    state.write_bytes(content(make_table(6).to_json().encode()))
    redis_server.stop()

    async def scenario():
        sub = signed_subscriber(redis_server, state_file=state)
        await sub.start(wait=0.5)
        try:
            assert sub.table is None
            assert sub.stats.refused[reason] == 1
        finally:
            await sub.stop()

    run(scenario())


def test_a_reader_always_checks_the_signature_of_its_state_file(redis_server, tmp_path):
    state = tmp_path / "routes.state"
    raw = make_table(6).to_json().encode()
    state.write_bytes(frame(raw, sign(raw, PUBLISHER)))
    redis_server.stop()

    async def scenario():
        sub = subscriber(redis_server, state_file=state)
        await sub.start(wait=0.5)
        try:
            assert sub.table == make_table(6)
            assert sub.stats.verified
            assert sub.stats.signer == key_id(PUBLISHER.public_key())
        finally:
            await sub.stop()

    run(scenario())


def test_tables_signed_by_either_of_two_trusted_keys_are_taken(redis_server, redis_client):
    both = [PUBLISHER.public_key(), NEXT.public_key()]

    async def scenario():
        sub = signed_subscriber(redis_server, trusted_keys=both)
        await sub.start()
        try:
            publish(redis_client, 1)
            await sub.wait_for_version(1, timeout=10)
            publish(redis_client, 2, key=NEXT, trusted_keys=both)
            await sub.wait_for_version(2, timeout=10)
            assert sub.stats.signer == key_id(NEXT.public_key())
            assert sub.stats.rejected == 0
        finally:
            await sub.stop()

    run(scenario())


def test_a_re_signed_table_rewrites_the_state_file_under_the_new_key(
    redis_server, redis_client, tmp_path
):
    # A rotation: the publisher re-signs the held version; after the old key is dropped, the
    # reader's state file must still verify.
    state = tmp_path / "routes.state"
    both = [PUBLISHER.public_key(), NEXT.public_key()]
    publish(redis_client, 4)

    async def scenario():
        sub = signed_subscriber(redis_server, trusted_keys=both, state_file=state)
        await sub.start()
        try:
            assert publish(redis_client, 4, key=NEXT, trusted_keys=both) is True
            await eventually(
                lambda: sub.stats.signer == key_id(NEXT.public_key()), what="the new signer"
            )
            await eventually(
                lambda: verify(*state_file_table(state), both) == key_id(NEXT.public_key()),
                what="the state file re-signed",
            )
            assert sub.table == make_table(4)
        finally:
            await sub.stop()

    run(scenario())

    async def restarted():
        redis_server.stop()
        sub = signed_subscriber(redis_server, trusted_keys=[NEXT.public_key()], state_file=state)
        await sub.start(wait=0.5)
        try:
            assert sub.table == make_table(4)
        finally:
            await sub.stop()

    run(restarted())


def test_more_than_two_trusted_keys_are_refused_at_construction(redis_server):
    keys = [PUBLISHER.public_key(), NEXT.public_key(), FORGER.public_key()]
    with pytest.raises(ValueError, match="3 trusted keys"):
        RouteSubscriber(redis_server.url, trusted_keys=keys)


@pytest.mark.parametrize("keys", [None, []])
def test_a_subscriber_without_trusted_keys_is_refused_at_construction(redis_server, keys):
    with pytest.raises(ValueError, match="trusted keys"):
        RouteSubscriber(redis_server.url, trusted_keys=keys)


def test_a_state_file_that_cannot_be_written_does_not_stop_the_subscriber(
    redis_server, redis_client, tmp_path, caplog
):
    (tmp_path / "not-a-directory").write_text("")
    state = tmp_path / "not-a-directory" / "routes.state"

    async def scenario():
        sub = signed_subscriber(redis_server, state_file=state)
        await sub.start()
        try:
            publish(redis_client, 1)
            await sub.wait_for_version(1, timeout=10)
            publish(redis_client, 2)
            assert (await sub.wait_for_version(2, timeout=10)).version == 2
        finally:
            await sub.stop()

    run(scenario())
    assert "could not write route state file" in caplog.text


def test_a_reader_started_from_an_old_key_state_file_rewrites_it_when_redis_has_it_re_signed(
    redis_server, redis_client, tmp_path
):
    state = tmp_path / "routes.state"
    both = [PUBLISHER.public_key(), NEXT.public_key()]
    raw = make_table(4).to_json().encode()
    state.write_bytes(frame(raw, sign(raw, PUBLISHER)))
    publish(redis_client, 4, key=NEXT, trusted_keys=both)

    async def scenario():
        sub = signed_subscriber(redis_server, trusted_keys=both, state_file=state)
        await sub.start()
        try:
            await eventually(
                lambda: verify(*state_file_table(state), both) == key_id(NEXT.public_key()),
                what="the state file re-signed",
            )
            assert sub.stats.source == "redis"
            assert sub.table == make_table(4)
        finally:
            await sub.stop()

    run(scenario())
