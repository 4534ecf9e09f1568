"""A restore never freezes routing: readers ahead of the database, Redis empty or not.

The model: readers hold version N (one in memory, one only in its state file); the database is
restored from a backup whose version is below N; Redis lost its data, or still holds N. The
pool app's next change takes ``next_version(restored, now)``; it must reach every reader, and
an old table delivered late must still be refused.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from datetime import UTC, datetime, timedelta

import pytest

from routing.publish import channel, publish_table, signature_key, table_key
from routing.signing import sign, unframe, verify
from routing.subscriber import RouteSubscriber
from routing.table import ALGORITHM, Backend, RouteTable
from routing.versions import next_version
from tests.routing.support import PUBLISHER

TRUSTED = [PUBLISHER.public_key()]
NOW = datetime.now(UTC)


def pool(version: int, *names: str) -> RouteTable:
    backends = tuple(Backend(n, f"127.0.0.1:{9200 + i}") for i, n in enumerate(names))
    return RouteTable(version, ALGORITHM, backends)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


async def eventually(predicate, timeout: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def reader(redis_server, state_file) -> RouteSubscriber:
    return RouteSubscriber(
        redis_server.url, state_file=state_file, poll_interval=0.2, timeout=1.0,
        trusted_keys=TRUSTED,
    )  # fmt: skip


def history(start: datetime, changes: int, step: timedelta, version: int = 0) -> int:
    """The version a database reaches after ``changes`` pool changes from ``start``."""
    for i in range(changes):
        version = next_version(version, start + i * step)
    return version


# (readers' version N, the restored database's version): the hybrid clock on both sides, or
# readers still holding a version of the old counter scheme.
CASES = {
    "clock-versions": (
        history(NOW - timedelta(days=2), 30, timedelta(hours=1)),
        history(NOW - timedelta(days=2), 10, timedelta(hours=1)),
    ),
    "counter-versions": (41, 7),
}


@pytest.mark.parametrize("redis_after", ["empty", "holding-N"])
@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_the_next_change_after_a_restore_reaches_every_reader(
    redis_server, redis_client, tmp_path, case, redis_after
):
    held, restored = CASES[case]
    assert restored < held
    memory_file, disk_file = tmp_path / "memory.state", tmp_path / "disk.state"
    publish_table(redis_client, pool(held, "b1", "b2"), signing_key=PUBLISHER)

    async def scenario():
        in_memory = reader(redis_server, memory_file)
        await in_memory.start()
        try:
            assert in_memory.table.version == held
            shutil.copy(memory_file, disk_file)  # a second reader, stopped, holding N on disk
            if redis_after == "empty":
                redis_client.flushall()
            on_disk = reader(redis_server, disk_file)
            await on_disk.start()
            try:
                assert on_disk.table.version == held
                assert on_disk.stats.source == ("state-file" if redis_after == "empty" else "redis")

                # A late publish of the restored database's own table changes nothing.
                publish_table(redis_client, pool(restored, "b1"), signing_key=PUBLISHER)
                await eventually(
                    lambda: in_memory.stats.reads > 2 and on_disk.stats.reads > 2, what="polls"
                )
                assert in_memory.table.version == held and on_disk.table.version == held

                # The pool app's next change: one more backend, under next_version().
                version = next_version(restored, datetime.now(UTC))
                assert version > held
                assert publish_table(
                    redis_client, pool(version, "b1", "b2", "b3"), signing_key=PUBLISHER
                )
                for sub in (in_memory, on_disk):
                    table = await sub.wait_for_version(version, timeout=10)
                    assert [b.name for b in table.backends] == ["b1", "b2", "b3"]

                # An old table delivered late, validly signed, is refused by every reader.
                assert not publish_table(redis_client, pool(held, "b1"), signing_key=PUBLISHER)
                late = pool(held, "b9").to_json().encode()
                redis_client.mset({table_key(): late, signature_key(): sign(late, PUBLISHER)})
                redis_client.publish(channel(), str(held))
                for sub in (in_memory, on_disk):
                    await eventually(lambda sub=sub: sub.stats.lower >= 1, what="the late table")
                    assert sub.table.version == version
            finally:
                await on_disk.stop()
        finally:
            await in_memory.stop()

    run(scenario())
    for path in (memory_file, disk_file):
        raw, line = unframe(path.read_bytes())
        verify(raw, line, TRUSTED)
        assert [b.name for b in RouteTable.from_json(raw).backends] == ["b1", "b2", "b3"]
