"""The pool as published: the task's table, idempotence, ordering and the doubling of the pool.

The publish task runs in this process here (``publish_routes.run()``, the code a worker runs);
tests/pool/test_worker_faults.py runs it in a real Celery worker.
"""

from __future__ import annotations

import logging
import time

import pytest

from panel.accounts.models import Via
from panel.accounts.origin import Origin
from routing.moves import plan_moves
from routing.pool import actions, tables, tasks
from routing.pool.models import RouteVersion
from routing.publish import publish_table, table_key
from routing.table import RouteTable
from tests.routing.pool.conftest import make_apps
from tests.support import wait_until

pytestmark = pytest.mark.django_db

CLI = Origin(via=Via.CLI)


def in_redis(client) -> RouteTable:
    return RouteTable.from_json(client.get(table_key("pooltest:")))


@pytest.fixture
def two_backends(pool_settings):
    actions.do_add_backend("b1", "127.0.0.1:9001", actor=None, origin=CLI)
    actions.do_add_backend("b2", "127.0.0.1:9002", actor=None, origin=CLI, weight=2)


def test_the_table_is_the_committed_pool_under_its_version(two_backends):
    table = tables.committed_table()
    assert table.version == RouteVersion.current().version > 0
    assert [(b.name, b.weight, b.state) for b in table.backends] == [
        ("b1", 1, "active"),
        ("b2", 2, "active"),
    ]
    assert table.published_at is not None


def test_the_task_publishes_the_committed_pool(two_backends, redis_client):
    assert tasks.publish_routes.run() == RouteVersion.current().version
    assert in_redis(redis_client) == tables.committed_table()


def test_the_task_reads_the_pool_when_it_runs_not_when_queued(two_backends, redis_client):
    # Queued for the version before, run after the next committed: it publishes the next.
    queued = RouteVersion.current().version
    change = actions.do_drain("b1", actor=None, origin=CLI)
    tasks.publish_routes.run(queued)
    assert in_redis(redis_client).backend("b1").state == "draining"
    assert in_redis(redis_client).version == change.version > queued


def test_running_the_task_twice_gives_the_same_result(two_backends, redis_client):
    pubsub = redis_client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe("pooltest:routes:changed")
    wait_until(lambda: redis_client.pubsub_numsub("pooltest:routes:changed")[0][1] == 1)
    version = RouteVersion.current().version
    assert tasks.publish_routes.run() == version
    first = redis_client.get(table_key("pooltest:"))
    assert tasks.publish_routes.run() is None
    assert redis_client.get(table_key("pooltest:")) == first
    announced = []
    deadline = time.monotonic() + 0.5
    while time.monotonic() < deadline:
        message = pubsub.get_message(timeout=0.1)
        if message is not None:
            announced.append(message["data"])
    assert announced == [str(version).encode()]
    pubsub.close()


def test_a_task_that_read_an_older_pool_never_overwrites_a_newer_table(two_backends, redis_client):
    stale = tables.committed_table()  # what a slow task read before the next change committed
    change = actions.do_add_backend("b3", "127.0.0.1:9003", actor=None, origin=CLI)
    tasks.publish_routes.run()
    assert publish_table(redis_client, stale, "pooltest:", signing_key=tasks.signing_key()) is False
    assert in_redis(redis_client).version == change.version > stale.version
    assert in_redis(redis_client).backend("b3") is not None


def test_nothing_is_published_before_the_first_change(pool_settings, redis_client):
    assert tasks.publish_routes.run() is None
    assert redis_client.get(table_key("pooltest:")) is None


def test_a_change_commits_while_the_broker_is_down(two_backends, redis_server, caplog):
    redis_server.stop()
    caplog.set_level(logging.WARNING, logger="routing.tasks")
    change = actions.do_set_weight("b1", 5, actor=None, origin=CLI)
    assert tasks.publish_routes.enqueue(change.version) is False
    assert tables.committed_table().backend("b1").weight == 5
    assert "periodic republish" in caplog.text


def test_doubling_the_pool_moves_exactly_the_predicted_apps(two_backends, redis_client):
    domains = sorted(make_apps(600))  # the order the panel lists apps in
    tasks.publish_routes.run()
    published = [in_redis(redis_client)]
    predicted = []
    for name, port in (("b3", 9003), ("b4", 9004)):
        spec = {"name": name, "address": f"127.0.0.1:{port}", "weight": 1}
        predicted.append(actions.preview("backend.add", spec).plan)
        actions.do_add_backend(name, spec["address"], actor=None, origin=CLI)
        tasks.publish_routes.run()
        published.append(in_redis(redis_client))

    # Each step moved, in the tables the proxies received, exactly the apps its preview named.
    for step, plan in enumerate(predicted):
        assert plan_moves(published[step], published[step + 1], domains) == plan
    # Overall: every moved app went to a new backend; none moved between b1 and b2.
    overall = plan_moves(published[0], published[-1], domains)
    assert {(m.source, m.target) for m in overall.moves} <= {
        (old, new) for old in ("b1", "b2") for new in ("b3", "b4")
    }
    # b2 weighs 2, so b3 and b4 (weight 1 each) take about 2 of 5 shares of the apps.
    assert 0.3 < overall.moved / len(domains) < 0.5
