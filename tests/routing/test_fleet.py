"""routing.fleet: heartbeat records, their keys, the reader and the convergence line, against a
real redis-server."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from routing.connect import sync_client
from routing.fleet import (
    Heartbeat,
    InvalidMember,
    Member,
    RateMeter,
    convergence,
    fleet_pattern,
    member_key,
    member_pattern,
    read_fleet,
)
from routing.table import ALGORITHM, RouteTable
from tests.routing.test_subscriber import eventually
from tests.support import wait_until

PREFIX = "t:"


def test_a_record_round_trips_through_json():
    member = Member(
        name="p1/0", role="proxy", address="127.0.0.1:8080", version=12, table_age=0.5,
        redis_connected=True, down=("b2",), rps=3.5, taken_at=1.0, at=2.0, misrouted_reloads=0,
        certificates=3, certs_not_after=1_800_000_000.0,
    )  # fmt: skip
    assert Member.from_json(member.to_json()) == member
    node = Member(name="b1", role="node", isolation=False, in_force=("isolation: off (x)",))
    assert Member.from_json(node.to_json()) == node
    # An older member's record, without the fields added since, reads as "not reported".
    old = Member.from_json(json.dumps({"name": "b2", "role": "node"}))
    assert (old.isolation, old.in_force, old.certificates, old.certs_not_after) == (
        None, (), None, None,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("doc", "problem"),
    [
        ({"role": "proxy"}, "name"),
        ({"name": "x", "role": "router"}, "role"),
        ({"name": "x", "role": "node", "version": -1}, "version"),
        ({"name": "x", "role": "node", "version": True}, "version"),
        ({"name": "x", "role": "node", "rps": "fast"}, "rps"),
        ({"name": "x", "role": "node", "down": "b1"}, "down"),
        ({"name": "x", "role": "node", "redis_connected": 1}, "redis_connected"),
        ({"name": "x", "role": "node", "isolation": "off"}, "isolation"),
        ({"name": "x", "role": "node", "in_force": "on"}, "in_force"),
        ({"name": "x", "role": "node", "in_force": ["x" * 501]}, "in_force"),
        ({"name": "x", "role": "proxy", "certificates": -2}, "certificates"),
        ({"name": "x", "role": "proxy", "certs_not_after": "2027-01-01"}, "certs_not_after"),
    ],
)
def test_a_malformed_record_is_refused_naming_the_field(doc, problem):
    with pytest.raises(InvalidMember, match=problem):
        Member.from_json(json.dumps(doc))


def test_keys_have_one_pattern_and_refuse_globs_and_unknown_roles():
    assert member_key("node", "b1", PREFIX) == "t:fleet:node:b1"
    assert fleet_pattern(PREFIX) == "t:fleet:*"
    with pytest.raises(ValueError, match="role"):
        member_key("db", "x", PREFIX)
    with pytest.raises(ValueError, match="glob"):
        member_key("node", "b*", PREFIX)
    with pytest.raises(ValueError, match="glob"):
        member_key("node", "b\\1", PREFIX)
    # What a member's Redis user may write: its own key; a proxy's workers' keys.
    assert member_pattern("node", "b1", PREFIX) == "t:fleet:node:b1"
    assert member_pattern("proxy", "p1", PREFIX) == "t:fleet:proxy:p1/*"


def test_the_reader_skips_records_that_are_malformed_or_misnamed(redis_client):
    good = Member(name="b1", role="node", version=3, at=time.time())
    redis_client.set(member_key("node", "b1", PREFIX), good.to_json())
    redis_client.set(member_key("node", "b2", PREFIX), "not json")
    redis_client.set(member_key("node", "b3", PREFIX), good.to_json())  # claims to be b1
    redis_client.set("other:fleet:node:b4", good.to_json())
    redis_client.set(member_key("node", "b5", PREFIX), "")  # a stop's tombstone: gone, not bad
    fleet = read_fleet(redis_client, PREFIX)
    assert (fleet.members, fleet.refused) == ((good,), 2)


def test_the_convergence_line_counts_each_role():
    members = [
        Member(name="p/0", role="proxy", version=12, taken_at=100.041),
        Member(name="p/1", role="proxy", version=12, taken_at=100.02),
        Member(name="b1", role="node", version=12, taken_at=100.01),
        Member(name="b2", role="node", version=11),
    ]
    partial = convergence(members, 12, since=100.0)
    assert partial.line() == "2/2 proxies and 1/2 nodes hold version 12"
    assert not partial.converged
    members[3] = Member(name="b2", role="node", version=13, taken_at=100.03)
    done = convergence(members, 12, since=100.0)
    assert done.line() == "2/2 proxies and 2/2 nodes hold version 12, 41 ms"
    assert done.converged


def test_the_rate_meter_divides_the_counter_growth_by_the_time():
    now = [0.0]
    meter = RateMeter(clock=lambda: now[0])
    assert meter.rate(10) == 0.0
    now[0] = 2.0
    assert meter.rate(30) == 10.0


def test_a_heartbeat_writes_expires_and_is_removed_on_stop(redis_server, redis_client):
    async def run():
        state = {"version": 1}
        beat = Heartbeat(
            redis_server.url, role="node", name="b1", prefix=PREFIX, interval=0.1, ttl=0.5,
            report=lambda: {"address": "127.0.0.1:9001", "version": state["version"]},
        )  # fmt: skip
        await beat.start()
        key = member_key("node", "b1", PREFIX)
        await eventually(lambda: redis_client.get(key), what="a first heartbeat")
        assert 0 < redis_client.pttl(key) <= 500
        state["version"] = 2
        beat.table_taken()
        await eventually(
            lambda: Member.from_json(redis_client.get(key) or b"{}").version == 2,
            what="the new version reported",
        )
        assert Member.from_json(redis_client.get(key)).taken_at == beat.taken_at
        await beat.stop()
        assert not redis_client.get(key)  # absent, or the 1 ms tombstone of a stop

    asyncio.run(run())


def test_a_heartbeat_survives_redis_going_away_and_writes_again(redis_server, redis_client):
    async def run():
        beat = Heartbeat(
            redis_server.url, role="proxy", name="p/0", prefix=PREFIX, interval=0.1, ttl=1.0,
            report=lambda: {"version": 1},
        )  # fmt: skip
        await beat.start()
        key = member_key("proxy", "p/0", PREFIX)
        await eventually(lambda: redis_client.get(key), what="a first heartbeat")
        redis_server.stop()
        written = beat.beats
        assert await beat.beat() is False
        redis_server.start()
        client = sync_client(redis_server.url, timeout=5)
        await eventually(lambda: beat.beats > written, timeout=15, what="a beat after restart")
        assert client.get(key) is not None
        client.close()
        await beat.stop()

    asyncio.run(run())


def test_the_heartbeat_of_a_member_that_dies_expires(redis_server, redis_client):
    async def run():
        beat = Heartbeat(
            redis_server.url, role="node", name="b9", prefix=PREFIX, interval=0.1, ttl=0.3,
            report=lambda: {"version": 1},
        )  # fmt: skip
        await beat.start()
        key = member_key("node", "b9", PREFIX)
        await eventually(lambda: redis_client.get(key), what="a first heartbeat")
        beat._task.cancel()  # the member dies: nobody deletes its key
        await eventually(lambda: redis_client.get(key) is None, what="the key to expire")
        beat._task = None
        await beat.stop()

    asyncio.run(run())


def test_a_proxy_worker_reports_the_table_it_holds_and_leaves_on_stop(redis_server, tmp_path):
    from tests.proxy.test_front import ProxyProcess, put_table

    proxy = ProxyProcess(redis_server.url, str(tmp_path / "routes.json"), "--name", "p9")
    client = sync_client(redis_server.url, timeout=5)
    try:
        proxy.start(ready=False)
        put_table(redis_server.url, RouteTable(version=5, algorithm=ALGORITHM, backends=()))
        key = member_key("proxy", "p9/0", "hosting:")

        def reported():
            raw = client.get(key)
            return raw is not None and Member.from_json(raw)

        member = wait_until(
            lambda: (m := reported()) and m.version == 5 and m.redis_connected and m,
            timeout=20,
            what="the proxy's heartbeat with version 5",
        )
        assert member.address == f"127.0.0.1:{proxy.port}"
        assert member.taken_at is not None
        assert proxy.stop() == 0
        assert not client.get(key)  # absent, or the 1 ms tombstone of a stop
    finally:
        proxy.stop()
        client.close()
