"""routing.subscriber behind Redis Sentinel: a fail-over costs a reconnect, never a change."""

from __future__ import annotations

import asyncio

import pytest
import redis

from routing.connect import sync_client
from routing.publish import publish_table
from routing.subscriber import RouteSubscriber
from scripts.sentinels import MASTER_NAME
from tests.routing.support import PUBLISHER, make_table
from tests.sentinel_group import SentinelGroup
from tests.support import wait_until

TRUSTED = [PUBLISHER.public_key()]


@pytest.fixture
def group():
    started = SentinelGroup().start()
    try:
        yield started
    finally:
        started.cleanup()


def publish_until_stored(url: str, version: int, timeout: float = 20.0) -> None:
    """Publish as the publish task does, retrying while the group has no master."""
    client = sync_client(url, timeout=1, retries=1)

    def attempt() -> bool:
        try:
            publish_table(client, make_table(version), signing_key=PUBLISHER, trusted_keys=TRUSTED)
            return True
        except redis.RedisError:
            return False

    try:
        wait_until(attempt, timeout, interval=0.1, what=f"publishing version {version}")
    finally:
        client.close()


def test_it_follows_the_table_across_a_killed_master(group):
    async def scenario():
        sub = RouteSubscriber(group.url, poll_interval=0.2, timeout=1.0, trusted_keys=TRUSTED)
        publish_until_stored(group.url, 1)
        await sub.start()
        try:
            await sub.wait_for_version(1, 10)
            old = await asyncio.to_thread(group.kill_master)
            await asyncio.to_thread(
                wait_until, lambda: group.master() != old, 30, 0.1, "a replica promoted"
            )
            await asyncio.to_thread(publish_until_stored, group.url, 2)
            table = await sub.wait_for_version(2, 10)
            assert table.version == 2
            assert sub.stats.connected
        finally:
            await sub.stop()

    asyncio.run(asyncio.wait_for(scenario(), 90))


def test_it_leaves_a_demoted_master_for_the_promoted_one(group):
    async def scenario():
        sub = RouteSubscriber(group.url, poll_interval=0.2, timeout=1.0, trusted_keys=TRUSTED)
        publish_until_stored(group.url, 1)
        await sub.start()
        try:
            await sub.wait_for_version(1, 10)
            before = sub.stats.reconnects
            old = group.master()
            client = group.sentinel_client(0)
            try:
                client.execute_command("SENTINEL", "FAILOVER", MASTER_NAME)
            finally:
                client.close()
            await asyncio.to_thread(
                wait_until, lambda: group.master() != old, 30, 0.1, "a replica promoted"
            )
            # The old master still runs (a replica now): the subscriber moves by itself.
            deadline = asyncio.get_running_loop().time() + 10
            while sub.stats.reconnects == before:
                assert asyncio.get_running_loop().time() < deadline, "no reconnect after fail-over"
                await asyncio.sleep(0.05)
            await asyncio.to_thread(publish_until_stored, group.url, 2)
            assert (await sub.wait_for_version(2, 10)).version == 2
        finally:
            await sub.stop()

    asyncio.run(asyncio.wait_for(scenario(), 90))
