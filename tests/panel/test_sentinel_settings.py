"""The panel on a sentinel:// REDIS_URL: its cache, its reload throttle and its Celery broker
all reach the master the sentinels name, before and after a fail-over."""

from __future__ import annotations

import json

import pytest
import redis

from tests.sentinel_group import SentinelGroup
from tests.support import child_env, run_python, wait_until

# Run in a child process: the settings are read once per process, from its environment.
PROBE = """
import json, django
django.setup()
from django.conf import settings
from django.core.cache import cache
from panel.celery import app
from routing.pool.tasks import publish_routes
from webapps.throttle import hit_reload

cache.set("probe", {tag!r}, 60)
verdict = hit_reload(7)
queued = publish_routes.enqueue()
print(json.dumps({{
    "broker": settings.CELERY_BROKER_URL,
    "master_name": app.conf.broker_transport_options.get("master_name"),
    "cache": cache.get("probe"),
    "throttle_allowed": verdict.allowed,
    "queued": queued,
}}))
"""


@pytest.fixture
def group():
    started = SentinelGroup().start()
    try:
        yield started
    finally:
        started.cleanup()


def probe(group: SentinelGroup, tag: str, tmp_path) -> dict:
    env = child_env(
        REDIS_URL=group.url, VAR_DIR=str(tmp_path), DJANGO_SETTINGS_MODULE="panel.settings"
    )
    return json.loads(run_python(env, "-c", PROBE.format(tag=tag), timeout=60).splitlines()[-1])


def master_client(group: SentinelGroup) -> redis.Redis:
    master = group.master()
    return redis.Redis(master.host, master.port, socket_timeout=2)


def test_cache_throttle_and_broker_use_the_master(group, tmp_path):
    out = probe(group, "one", tmp_path)
    assert out["broker"].startswith("sentinel://") and ";" in out["broker"]
    assert out["master_name"] == "hosting"
    assert out["cache"] == "one"
    assert out["throttle_allowed"] is True
    assert out["queued"] is True
    client = master_client(group)
    try:
        keys = {k.decode() for k in client.keys("*")}
    finally:
        client.close()
    assert any(":throttle:reload:7" in k for k in keys), keys
    assert any("cache" in k for k in keys), keys
    assert any(k.endswith("celery") for k in keys), keys  # the queue holds the task


def test_they_follow_a_fail_over(group, tmp_path):
    probe(group, "before", tmp_path)
    old = group.kill_master()
    wait_until(lambda: group.master() != old, 30, interval=0.1, what="a replica promoted")
    out = wait_until(lambda: probe(group, "after", tmp_path), 30, interval=0.2, what="the panel")
    assert (out["cache"], out["throttle_allowed"], out["queued"]) == ("after", True, True)
    client = master_client(group)
    try:
        # The queue is under the broker's key prefix (CELERY_BROKER_TRANSPORT_OPTIONS).
        queues = [k for k in client.keys("*celery") if client.type(k) == b"list"]
        assert sum(client.llen(k) for k in queues) >= 1, queues
    finally:
        client.close()
