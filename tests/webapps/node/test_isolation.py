"""Tenant isolation through the real node: ``manage.py runnode`` as root sandboxes every app.

Two owners' apps are started by the node's own supervisor (on first request), each as its
owner's uid; one of them is the hostile escape app (``escape_app.py``) and tries every escape of
the list at once against the real things: the other owner's home and app, the panel's database
and secret key, the node's environment and control socket, the panel's gunicorn, Redis.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.support import child_env, free_port, repo_root, wait_until
from tests.webapps.node import harness
from tests.webapps.node.support import MANAGE, add_apps, answer_app, write_app
from webapps.node import sandbox
from webapps.node.control import call
from webapps.node.spec import socket_path

HERE = Path(__file__).resolve().parent
PANEL_UID = 999_999  # the setting's default
WHOAMI = """
    import os
    def application(environ, start_response):
        body = ("%d %d %s" % (os.getuid(), os.getgid(), os.getgroups())).encode()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [body]
"""


@pytest.fixture
def isolating_node(platform):
    harness.need_isolation(egress=True)
    marker = "node-secret-" + os.urandom(8).hex()
    platform.env["HOSTING_TEST_NODE_SECRET"] = marker
    escape = (HERE / "escape_app.py").read_text()
    sources = {
        "alice": write_app(platform.home, "alice", "alice.example", escape),
        "bob": write_app(platform.home, "bob", "bob.example", WHOAMI),
    }
    add_apps(platform.env, {o: [(f"{o}.example", str(s))] for o, s in sources.items()})
    node = platform.node("b1", "--no-routes")
    node.marker = marker
    return node


def _uid_of(pid: int) -> int:
    return harness.uid_of(pid)


def _descendants(pid: int) -> list[int]:
    class P:
        pass

    p = P()
    p.pid = pid
    return harness.sandbox_pids(p)


def test_it_says_isolation_is_on_with_the_cgroups_in_force(isolating_node):
    status = call(isolating_node.control_socket, {"op": "status"}, timeout=10)
    assert status["isolation"] == "on"
    assert any(line.startswith("cgroups") for line in status["in_force"])
    wait_until(lambda: "isolation: on" in isolating_node.output.read_text(), 10)
    assert "cgroups v" in isolating_node.output.read_text()


def test_it_runs_each_owners_app_as_its_own_uid_and_the_panel_as_its_own(isolating_node):
    node = isolating_node
    code, _, body = node.request("bob.example")
    assert code == 200, body
    uid, gid, groups = body.split(" ", 2)
    assert int(uid) == int(gid) and int(uid) not in (0, os.getuid(), PANEL_UID)
    assert groups == "[]"
    assert node.request("alice.example", "/ping")[0] == 200
    assert node.request("panel.localhost", "/accounts/login/")[0] == 200
    apps = {a["name"]: a for a in node.status()}
    uids = {
        name: {_uid_of(p) for p in (a["pid"], *_descendants(a["pid"]))} for name, a in apps.items()
    }
    # the panel: setpriv became its gunicorn, so every process of it is the panel's uid
    assert uids["panel.localhost"] == {PANEL_UID}
    # a user app: the launcher and bwrap are root (no capabilities past bwrap), the app its owner
    assert uids["bob.example"] == {0, int(uid)}
    assert len(uids["alice.example"] - {0}) == 1 and uids["alice.example"] != uids["bob.example"]


def test_it_stops_every_escape_of_an_app_started_by_the_node(isolating_node, redis_client):
    node, home = isolating_node, isolating_node.env["HOME_ROOT"]
    var = Path(node.env["VAR_DIR"])
    assert node.request("bob.example")[0] == 200
    assert node.request("panel.localhost", "/accounts/login/")[0] == 200
    apps = {a["name"]: a for a in node.status()}
    bob_pids = [apps["bob.example"]["pid"], *_descendants(apps["bob.example"]["pid"])]
    panel_pid = apps["panel.localhost"]["pid"]
    bob_home = Path(home) / "bob"
    (bob_home / "private.txt").write_text("bob's secret")
    (bob_home / "private.txt").chmod(0o666)
    (var / "tls").mkdir(exist_ok=True)
    (var / "tls" / "proxy-key.pem").write_text("-----BEGIN PRIVATE KEY-----")
    database = Path(node.env["DATABASE_URL"].removeprefix("sqlite:///"))
    redis_port = int(node.env["REDIS_URL"].rsplit(":", 1)[1].split("/")[0])
    targets = {
        "read": {
            "another home's file": str(bob_home / "private.txt"),
            "the panel's SQLite file": str(database),
            "the secret key": str(var / "secret_key"),
            "a TLS key": str(var / "tls" / "proxy-key.pem"),
            "the panel's code": str(repo_root() / "panel" / "settings.py"),
            "the node's environment": f"/proc/{node.process.pid}/environ",
        },
        "write": {
            "another home": str(bob_home / "planted.py"),
            "the var directory": str(var / "planted"),
            "the run directory": str(node.run_dir / "planted"),
            "the panel's code": str(repo_root() / "planted.py"),
            "the system": "/etc/planted",
        },
        "pids": {
            "the node": node.process.pid,
            "the panel's gunicorn": panel_pid,
            **{f"bob's process {p}": p for p in bob_pids},
        },
        "unix": {
            "the control socket": str(node.control_socket),
            "bob's app socket": str(socket_path(node.run_dir, "bob.example")),
            "the panel's socket": str(socket_path(node.run_dir, "panel.localhost")),
        },
        "tcp": {"the node's port": node.port, "redis": redis_port},
        "redis_port": redis_port,
        "secret_marker": node.marker,
    }
    alice_home = Path(home) / "alice"
    (alice_home / "targets.json").write_text(json.dumps(targets))
    code, _, body = node.request("alice.example", "/escape", timeout=90)
    assert code == 200, body
    report = json.loads(body)
    worked = {name: r for name, r in report["results"].items() if r["worked"]}
    print(f"escapes tried {len(report['results'])}, worked {len(worked)}")
    assert worked == {}
    assert len(report["results"]) >= 30
    assert redis_client.get("escaped") is None
    for planted in (bob_home / "planted.py", var / "planted", repo_root() / "planted.py"):
        assert not planted.exists()
    alice_uid = report["uid"]
    assert (report["gid"], report["groups"], report["euid"]) == (alice_uid, [], alice_uid)
    assert alice_uid not in (0, os.getuid(), PANEL_UID)
    bob_uids = {_uid_of(p) for p in bob_pids} - {0}
    assert len(bob_uids) == 1 and alice_uid not in bob_uids


def test_its_app_sockets_and_homes_are_the_owners_only(isolating_node):
    node = isolating_node
    assert node.request("bob.example")[0] == 200
    sock = socket_path(node.run_dir, "bob.example")
    bob_uid = harness.uid_of(_descendants(node.app("bob.example")["pid"])[-1])
    assert sock.stat().st_mode & 0o077 == 0
    assert (sock.parent.stat().st_uid, sock.parent.stat().st_mode & 0o777) == (bob_uid, 0o700)
    home = Path(node.env["HOME_ROOT"]) / "bob"
    assert (home.stat().st_uid, home.stat().st_mode & 0o777) == (bob_uid, 0o700)


NOBODY = 65534


def _as_nobody(*args: str, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, MANAGE, "runnode", *args],
        env=env,
        cwd=repo_root(),
        user=NOBODY,
        group=NOBODY,
        extra_groups=[],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.fixture
def nobody_env(short_tmp):
    if os.geteuid() != 0:
        pytest.skip("needs root to run the node as another user")
    short_tmp.chmod(0o777)
    for directory in sandbox.python_paths(sys.executable):  # as runnode does for the panel
        for parent in (Path(directory), *Path(directory).parents):
            parent.chmod(parent.stat().st_mode | 0o001)
    return child_env(
        SECRET_KEY="x" * 40,
        VAR_DIR=str(short_tmp / "var"),
        HOME_ROOT=str(short_tmp / "home"),
        DATABASE_URL=f"sqlite:///{short_tmp}/db.sqlite3",
        DJANGO_SETTINGS_MODULE="panel.settings",
        LOG_LEVEL="WARNING",
    )


def test_it_refuses_to_start_when_it_cannot_isolate_unless_told(nobody_env, short_tmp):
    refused = _as_nobody("--name", "b9", "--no-routes", env=nobody_env)
    output, _ = refused.communicate(timeout=60)
    assert refused.returncode != 0
    assert "refusing to start: apps cannot be isolated" in output
    assert "--apps-share-node-user" in output
    run_dir = short_tmp / "r"
    allowed = _as_nobody(
        "--name", "b9", "--no-routes", "--apps-share-node-user",
        "--listen", f"127.0.0.1:{free_port()}",
        "--run-dir", str(run_dir), "--log-dir", str(short_tmp / "l"),
        env=nobody_env,
    )  # fmt: skip
    try:
        first = allowed.stdout.readline()
        assert first.startswith("node b9: isolation: off (apps share the node's user"), first
        wait_until(lambda: (run_dir / "control.sock").exists(), 30)
        status = call(run_dir / "control.sock", {"op": "status"}, timeout=10)
        assert status["isolation"] == "off"
    finally:
        allowed.terminate()
        allowed.wait(30)
        allowed.stdout.close()


def _leaf_processes(pid: int) -> set[int]:
    """The processes below ``pid`` that have no children: a sandboxed gunicorn's workers."""
    below = [pid, *_descendants(pid)]
    return {p for p in below if not Path(f"/proc/{p}/task/{p}/children").read_text().split()}


def _running(pid: int) -> bool:
    """Whether ``pid`` still runs: it exists and is not a zombie its parent has yet to reap."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_reload_in_the_sandbox_runs_the_new_code_once_the_old_workers_are_gone(platform):
    harness.need_isolation()
    source = write_app(platform.home, "carol", "carol.example", answer_app("one"))
    add_apps(platform.env, {"carol": [("carol.example", str(source))]})
    node = platform.node("b1", "--no-routes")
    assert node.request("carol.example")[2] == "one"
    pid = node.app("carol.example")["pid"]
    # A start answers from its first worker; the node's default is two.
    old_workers = wait_until(lambda: len(w := _leaf_processes(pid)) == 2 and w, 30,
                             what="both workers of the start")  # fmt: skip
    (source / "wsgi.py").write_text(textwrap.dedent(answer_app("two")))
    answer = call(node.control_socket, {"op": "reload", "domain": "carol.example"}, timeout=60)

    assert answer["status"] == "OK" and answer["result"] == "reloaded", answer
    # The reload answers once the previous generation has exited: none of them can answer.
    assert [p for p in old_workers if _running(p)] == []
    assert {node.request("carol.example")[2] for _ in range(6)} == {"two"}
