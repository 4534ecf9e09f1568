"""Faults with a real Celery worker, real beat and a real Redis (tests/pool/stack.py).

Beat runs every second here (ROUTES_REPUBLISH_SECONDS=1), so "within one period" waits are a
few seconds at most; the deadlines below are generous bounds for a loaded machine, not
measurements.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from routing.publish import publish_table, table_key
from routing.table import RouteTable
from tests.routing.pool.support import PREFIX, Stack, ThreadedSubscriber
from tests.support import wait_until

# The worker and the CLI share a database file (or a PostgreSQL database under `make test-pg`).
pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    stack = Stack(tmp_path_factory.mktemp("stack"), period=1)
    try:
        migrated = stack.manage("migrate", "--verbosity", "0")
        assert migrated.returncode == 0, migrated.stderr
        stack.start_driver()
        stack.change("do_add_backend", "b1", "127.0.0.1:9101")
        stack.pool_version = stack.change("do_add_backend", "b2", "127.0.0.1:9102")
        # Drop the publish messages those changes queued: only a starting worker publishes now.
        stack.client.flushall()
        stack.start_worker()
        stack.first_published = stack.wait_published(stack.pool_version, timeout=60)
        stack.start_beat()
        stack.subscriber = ThreadedSubscriber(
            stack.redis.url, trusted_keys=stack.trusted_keys(), poll_interval=0.2, timeout=1.0
        )
        stack.subscriber.wait_for_version(stack.pool_version)
        yield stack
    finally:
        if getattr(stack, "subscriber", None) is not None:
            stack.subscriber.close()
        stack.close()


def assert_never_regressed(stack) -> None:
    versions = stack.subscriber.versions
    assert versions == sorted(set(versions)), versions


def current(stack) -> RouteTable:
    return RouteTable.from_json(stack.call({"table": True})["table"])


def test_a_starting_worker_publishes_the_pool(stack):
    assert stack.first_published.version == stack.pool_version
    assert [b.name for b in stack.first_published.backends] == ["b1", "b2"]


def test_a_change_reaches_subscribers_through_the_worker(stack):
    version = stack.change("do_set_weight", "b2", 3)
    table = stack.subscriber.wait_for_version(version)
    assert table.backend("b2").weight == 3
    assert_never_regressed(stack)


def test_the_same_task_delivered_twice_gives_the_same_result(stack):
    version = current(stack).version
    stack.wait_published(version)
    before = stack.client.get(table_key(PREFIX))
    pubsub = stack.client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(PREFIX + "routes:changed")
    wait_until(lambda: stack.client.pubsub_numsub(PREFIX + "routes:changed")[0][1] >= 2)
    done = stack.log("worker").count("routing.publish_routes[dup-1] succeeded")
    for _ in range(2):
        stack.call({"enqueue": [version], "task_id": "dup-1"})
    wait_until(
        lambda: stack.log("worker").count("routing.publish_routes[dup-1] succeeded") >= done + 2,
        timeout=30,
        what="both deliveries run",
    )
    assert stack.client.get(table_key(PREFIX)) == before
    assert pubsub.get_message(timeout=0.5) is None
    pubsub.close()


def test_publishes_that_run_late_and_out_of_order_never_regress(stack):
    stale = current(stack)
    worker = stack.processes["worker"]
    os.kill(worker.pid, signal.SIGSTOP)  # publishes queue up behind a stalled worker
    try:
        versions = [
            stack.change("do_set_weight", "b1", 2),
            stack.change("do_drain", "b2"),
            stack.change("do_activate", "b2"),
        ]
        stack.call({"enqueue": [stale.version]})  # a late task from an older change
    finally:
        os.kill(worker.pid, signal.SIGCONT)
    table = stack.subscriber.wait_for_version(versions[-1])
    assert table.backend("b2").state == "active"
    # A task that read the pool before these changes and writes only now changes nothing.
    assert publish_table(stack.client, stale, PREFIX, signing_key=stack.signing_key()) is False
    assert stack.published().version == versions[-1]
    assert_never_regressed(stack)


def test_a_change_made_while_redis_is_down_is_published_when_it_returns(stack):
    held = stack.subscriber.table
    stack.redis.stop()
    try:
        wait_until(lambda: not stack.subscriber.stats.connected, what="the subscriber to notice")
        version = stack.change("do_add_backend", "b3", "127.0.0.1:9103")
        assert stack.subscriber.table == held  # the last good table, meanwhile
    finally:
        stack.redis.start()
    restarted = time.monotonic()
    table = stack.wait_published(version, timeout=60)
    print(f"published {time.monotonic() - restarted:.2f}s after Redis came back")
    assert table.backend("b3") is not None
    assert stack.subscriber.wait_for_version(version).backend("b3") is not None
    assert_never_regressed(stack)


def test_a_redis_that_lost_its_data_is_republished(stack):
    held = stack.subscriber.wait_for_version(current(stack).version)
    stack.client.flushall()
    wait_until(lambda: stack.subscriber.stats.missing, what="the subscriber to see no table")
    assert stack.subscriber.table == held
    assert stack.wait_published(held.version, timeout=30) == held
    wait_until(lambda: not stack.subscriber.stats.missing, what="the subscriber to see it back")
    assert stack.subscriber.table == held


def test_a_malformed_table_written_by_hand_is_ignored_counted_and_repaired(stack):
    held = stack.subscriber.wait_for_version(current(stack).version)
    malformed = stack.subscriber.stats.malformed
    stack.set_signed(b'{"version": 999999, "backends": "all of them"}')
    wait_until(lambda: stack.subscriber.stats.malformed == malformed + 1, what="it counted")
    assert stack.subscriber.table == held
    assert stack.wait_published(held.version, timeout=30) == held


def test_a_lower_version_written_by_hand_is_ignored_counted_and_repaired(stack):
    held = stack.subscriber.wait_for_version(current(stack).version)
    lower = stack.subscriber.stats.lower
    old = RouteTable(held.version - 1, held.algorithm, held.backends[:1], held.published_at)
    stack.set_signed(old.to_json())
    wait_until(lambda: stack.subscriber.stats.lower == lower + 1, what="it counted")
    assert stack.subscriber.table == held
    assert stack.wait_published(held.version, timeout=30) == held
    assert_never_regressed(stack)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["backends", "add", "b1", "127.0.0.1:9109"], "a backend named 'b1' already exists"),
        (["backends", "set-weight", "b1", "0"], "invalid weight 0"),
        (["backends", "add", "b9", "not an address"], "invalid address"),
    ],
)
def test_the_cli_refuses_bad_input_with_status_1_and_changes_nothing(stack, argv, message):
    before = current(stack)
    result = stack.manage(*argv)
    assert result.returncode == 1
    assert message in result.stderr
    assert result.stdout == ""
    assert current(stack) == before


def test_routing_publish_refuses_when_redis_holds_a_newer_version(stack):
    table = current(stack)
    newer = RouteTable(table.version + 50, table.algorithm, table.backends, table.published_at)
    stack.set_signed(newer.to_json())
    result = stack.manage("routing", "publish")
    assert result.returncode == 1
    assert f"Redis holds version {newer.version}" in result.stderr
    bumped = stack.manage("routing", "publish", "--bump")
    assert bumped.returncode == 0, bumped.stderr
    assert stack.wait_published(newer.version + 1).version > newer.version
