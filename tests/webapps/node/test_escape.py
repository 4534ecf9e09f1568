"""The escape suite: a hostile app tries to reach everything outside its sandbox, and fails.

Two owners' apps run under gunicorn, each in its sandbox (``webapps.node.sandbox``). The
stand-ins for what a tenant must not reach (another home, the panel's database, the secret
key, a TLS key, the control socket, an app socket in a shared directory) are made readable and
writable by everyone on purpose: only the sandbox stands between the app and them.
"""

from __future__ import annotations

import json
import os
import socket
import stat
from pathlib import Path

import pytest

from tests.webapps.node import harness
from webapps.node import sandbox

ALICE, BOB = 52001, 52002


@pytest.fixture
def stage(tmp_path):
    isolation = harness.need_isolation()
    var = tmp_path / "var"
    alice = harness.make_tenant(tmp_path, "alice", ALICE, "escape_app.py")
    bob = harness.make_tenant(tmp_path, "bob", BOB, "escape_app.py")
    for home in (alice.home, bob.home):
        home.chmod(0o777)
    bob.write("private.txt", "bob's secret").chmod(0o666)
    (var / "db.sqlite3").write_bytes(b"SQLite format 3\0 the panel's database")
    (var / "secret_key").write_text("the panel's secret key")
    (var / "tls").mkdir()
    (var / "tls" / "proxy-key.pem").write_text("-----BEGIN PRIVATE KEY-----")
    for path in (var / "db.sqlite3", var / "secret_key", var / "tls" / "proxy-key.pem"):
        path.chmod(0o666)
    listeners = []

    def unix_listener(path):
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(str(path))
        path.chmod(0o777)
        server.listen(8)
        listeners.append(server)
        return str(path)

    shared = var / "run" / "b1" / "apps"
    shared.chmod(0o777)
    control = unix_listener(var / "run" / "b1" / "control.sock")
    legacy = unix_listener(shared / "0123456789abcdef.sock")
    tcp = socket.socket()
    tcp.bind(("127.0.0.1", 0))
    tcp.listen(8)
    listeners.append(tcp)
    try:
        yield {
            "isolation": isolation,
            "root": tmp_path,
            "alice": alice,
            "bob": bob,
            "control": control,
            "legacy": legacy,
            "tcp_port": tcp.getsockname()[1],
        }
    finally:
        for tenant in (alice, bob):
            harness.stop(tenant)
        for server in listeners:
            server.close()


def test_it_stops_every_escape_of_two_owners_apps(stage, redis_server, redis_client, monkeypatch):
    marker = "node-secret-" + os.urandom(8).hex()
    monkeypatch.setenv("HOSTING_TEST_NODE_SECRET", marker)
    alice, bob, root = stage["alice"], stage["bob"], stage["root"]
    var = root / "var"
    for tenant in (alice, bob):
        harness.start(tenant, stage["isolation"], workers=2)
    bob_pids = harness.wait_until(
        lambda: len(pids := harness.gunicorn_pids(bob.process)) == 3 and pids, 20, what="workers"
    )  # gunicorn's master and its two workers
    targets = {
        "read": {
            "another home's file": str(bob.home / "private.txt"),
            "the panel's SQLite file": str(var / "db.sqlite3"),
            "the secret key": str(var / "secret_key"),
            "a TLS key": str(var / "tls" / "proxy-key.pem"),
            "the panel's code": str(sandbox.CODE_ROOT / "panel" / "settings.py"),
            "the node's environment": f"/proc/{os.getpid()}/environ",
        },
        "write": {
            "another home": str(bob.home / "planted.py"),
            "the var directory": str(var / "planted"),
            "the run directory": str(var / "run" / "b1" / "planted"),
            "the system": "/etc/planted",
            "the interpreter": str(sandbox.python_paths(os.sys.executable)[0]) + "/planted",
        },
        "pids": {"the node": os.getpid(), **{f"bob's gunicorn {p}": p for p in bob_pids}},
        "unix": {
            "the control socket": stage["control"],
            "bob's app socket": str(bob.socket),
            "an app socket in a shared directory": stage["legacy"],
        },
        "tcp": {"a loopback listener": stage["tcp_port"], "redis": redis_server.port},
        "redis_port": redis_server.port,
        "secret_marker": marker,
    }
    alice.write("targets.json", json.dumps(targets))
    status, body = harness.get(alice.socket, "/escape", timeout=60)
    assert status == 200, body
    report = json.loads(body)
    worked = {name: r for name, r in report["results"].items() if r["worked"]}
    print(f"escapes tried {len(report['results'])}, worked {len(worked)}")
    assert worked == {}
    assert len(report["results"]) == 31
    assert redis_client.get("escaped") is None
    assert not (bob.home / "planted.py").exists()
    assert not (var / "planted").exists()
    # Alice's app ran as alice, with no groups; bob's as bob; neither as root nor as the node.
    assert (report["uid"], report["gid"], report["groups"]) == (ALICE, ALICE, [])
    assert report["euid"] == ALICE
    assert {harness.uid_of(p) for p in harness.gunicorn_pids(alice.process)} == {ALICE}
    assert {harness.uid_of(p) for p in bob_pids} == {BOB}
    assert os.getuid() not in (ALICE, BOB)


def test_it_serves_the_app_over_a_socket_only_the_node_and_the_app_can_reach(stage):
    alice = stage["alice"]
    harness.start(alice, stage["isolation"])
    assert harness.get(alice.socket, "/ping")[0] == 200
    mode = alice.socket.stat().st_mode
    assert stat.S_ISSOCK(mode)
    assert mode & 0o077 == 0, oct(mode)
    assert alice.socket.stat().st_uid == ALICE
    assert stat.S_IMODE(alice.socket_dir.stat().st_mode) == 0o700


def test_it_stops_the_whole_sandbox_when_the_launcher_is_killed(stage):
    alice = stage["alice"]
    harness.start(alice, stage["isolation"], workers=2)
    harness.wait_until(lambda: len(harness.gunicorn_pids(alice.process)) == 3, 20, what="workers")
    pids = harness.sandbox_pids(alice.process)  # bwrap, gunicorn's master, two workers
    os.killpg(alice.process.pid, 9)
    alice.process.wait(10)

    def gone():
        return not any(_alive(p) for p in pids)

    harness.wait_until(gone, 10, what="every process of the sandbox to exit")


def test_it_forwards_hup_to_gunicorn_for_a_graceful_reload(stage):
    alice = stage["alice"]
    harness.start(alice, stage["isolation"], workers=1)
    before = set(harness.gunicorn_pids(alice.process))
    master = min(before)
    alice.process.send_signal(1)  # SIGHUP to the launcher, as the supervisor's reload does

    def new_worker():
        now = set(harness.gunicorn_pids(alice.process))
        return master in now and now - before

    harness.wait_until(new_worker, 20, what="a new worker after HUP")
    assert harness.get(alice.socket, "/ping")[0] == 200
    alice.process.terminate()
    assert alice.process.wait(20) == 0  # gunicorn's graceful stop, passed through


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
