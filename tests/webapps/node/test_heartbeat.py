"""A node reports itself to the fleet: a heartbeat in Redis naming the table version it holds
and whether it sandboxes its apps, written when it takes a new table, removed when it stops."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys

import pytest
import redis

from routing import ALGORITHM, Backend, RouteTable
from routing.fleet import Member, member_key
from routing.keys import load_or_create_signing_key
from routing.publish import publish_table
from tests.support import free_port, wait_until
from tests.webapps.node.support import MANAGE, copy_db, platform_env, repo_root


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


NOBODY = 65534


def test_a_node_that_cannot_isolate_reports_isolation_off(short_tmp, template_db):
    """Not root (nobody), told that apps may share its user: the node starts, says "isolation:
    off" on its start-up line, and its heartbeat says so for the fleet page."""
    if os.geteuid() != 0:
        pytest.skip("needs root, to start the node as another user (nobody)")
    if shutil.which("setpriv") is None:
        pytest.skip("needs setpriv (util-linux) to start the node as nobody")
    (short_tmp / "home").mkdir()
    env = platform_env(short_tmp, copy_db(template_db, short_tmp))
    for path in [short_tmp, *short_tmp.rglob("*")]:
        os.chown(path, NOBODY, NOBODY)
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    key = member_key("node", "b9", env["REDIS_PREFIX"])
    output = short_tmp / "b9.out"
    with open(output, "wb") as out:
        process = subprocess.Popen(
            [
                "setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                sys.executable, MANAGE, "runnode", "--name", "b9",
                "--listen", f"127.0.0.1:{free_port()}", "--run-dir", str(short_tmp / "r-b9"),
                "--log-dir", str(short_tmp / "l-b9"), "--apps-share-node-user",
            ],
            env={**env, "NODE_REDIS_URL": os.environ["REDIS_URL"]}, cwd=repo_root(),
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:

        def reported() -> Member | None:
            if process.poll() is not None:
                raise RuntimeError(f"node exited:\n{output.read_text()[-3000:]}")
            raw = client.get(key)
            return Member.from_json(raw) if raw else None

        member = wait_until(reported, 60, what="the heartbeat of a node running as nobody")
        assert member.isolation is False
        assert member.in_force[0].startswith("isolation: off (")
        assert f"node b9: {member.in_force[0]}" in output.read_text()
        os.killpg(process.pid, signal.SIGTERM)
        assert process.wait(30) == 0
        assert not client.get(key)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
        client.close()
