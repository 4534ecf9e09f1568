"""A node reports itself to the fleet: a heartbeat in Redis naming the table version it holds,
written when it takes a new table, removed when it stops."""

from __future__ import annotations

import os

import redis

from routing import ALGORITHM, Backend, RouteTable
from routing.fleet import Member, member_key
from routing.keys import load_or_create_signing_key
from routing.publish import publish_table
from tests.support import wait_until


def test_a_node_reports_each_table_it_takes_and_leaves_on_stop(platform):
    b1 = platform.node("b1")
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    prefix = platform.env["REDIS_PREFIX"]
    key = member_key("node", "b1", prefix)
    try:
        for version in (1, 2):
            table = RouteTable(version, ALGORITHM, (Backend("b1", b1.address),))
            # Signed with the machine's key under the node's VAR_DIR, which it trusts.
            signer = load_or_create_signing_key(platform.env["VAR_DIR"])
            assert publish_table(client, table, prefix=prefix, signing_key=signer)
            member = wait_until(
                lambda v=version: (
                    (raw := client.get(key)) is not None
                    and (m := Member.from_json(raw)).version == v
                    and m
                ),
                timeout=20,
                what=f"the node's heartbeat with version {version}",
            )
        assert (member.role, member.address, member.redis_connected) == ("node", b1.address, True)
        # Whether it sandboxes its apps, as its start-up line says ("isolation: on (...)").
        assert member.isolation is not None
        assert member.in_force[0].startswith(f"isolation: {'on' if member.isolation else 'off'}")
        assert f"node b1: {member.in_force[0]}" in b1.output.read_text()
        b1.stop()
        assert not client.get(key)  # absent, or the 1 ms tombstone of a stop
    finally:
        client.close()
