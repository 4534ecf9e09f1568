"""A fork bomb and a memory bomb in one owner's app, through the real node (root, sandboxes,
per-owner cgroups): contained to that owner; the node, the panel and a neighbour keep answering;
the bombed app comes back (gunicorn replaces a killed worker; the node restarts a dead app with
back-off)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from tests.support import wait_until
from tests.webapps.node import harness
from tests.webapps.node.support import add_apps, answer_app, write_app
from webapps.node import cgroups
from webapps.node.control import call

HERE = Path(__file__).resolve().parent
PIDS = 48
MEMORY_MB = 96


@pytest.fixture
def bomb_node(platform):
    harness.need_isolation()
    platform.env.update(NODE_OWNER_PIDS=str(PIDS), NODE_OWNER_MEMORY_MB=str(MEMORY_MB))
    sources = {
        "bomber": write_app(
            platform.home, "bomber", "bomber.example", (HERE / "bomb_app.py").read_text()
        ),
        "calm": write_app(platform.home, "calm", "calm.example", answer_app("calm")),
    }
    add_apps(platform.env, {o: [(f"{o}.example", str(s))] for o, s in sources.items()})
    node = platform.node("b2", "--no-routes", "--start-timeout", "20")
    assert node.request("bomber.example", "/ping")[0] == 200
    assert node.request("calm.example")[2] == "calm"
    return node


class Neighbour(threading.Thread):
    """Asks the neighbour app and the node's control socket, again and again, until stopped."""

    def __init__(self, node) -> None:
        super().__init__(daemon=True)
        self.node = node
        self.done = threading.Event()
        self.answers = 0
        self.failures: list[str] = []

    def run(self) -> None:
        while not self.done.is_set():
            try:
                code, _, body = self.node.request("calm.example", timeout=10)
                call(self.node.control_socket, {"op": "status"}, timeout=10)
            except Exception as exc:  # every miss is recorded, none is hidden
                self.failures.append(repr(exc))
                continue
            if (code, body) != (200, "calm"):
                self.failures.append(f"{code} {body[:100]}")
            self.answers += 1

    def stop(self) -> None:
        self.done.set()
        self.join(30)


def _bomber_uid(node) -> int:
    pid = node.app("bomber.example")["pid"]
    uids = {harness.uid_of(p) for p in harness.sandbox_pids(type("P", (), {"pid": pid}))} - {0}
    (uid,) = uids
    return uid


def test_a_fork_bomb_is_held_to_its_owners_pids_and_the_rest_keeps_answering(bomb_node):
    node = bomb_node
    uid = _bomber_uid(node)
    groups = cgroups.OwnerGroups(f"hosting-{node.name}")
    neighbour = Neighbour(node)
    neighbour.start()
    try:
        assert node.request("bomber.example", "/fork")[2] == "fork bomb started"
        peak = wait_until(
            lambda: (n := len(groups.pids(f"u{uid}"))) >= PIDS - 4 and n, 30, what="the bomb"
        )
        start = neighbour.answers
        wait_until(lambda: neighbour.answers >= start + 5, 30, what="the neighbour")
        assert len(groups.pids(f"u{uid}")) <= PIDS
    finally:
        neighbour.stop()
    print(
        f"fork bomb: {peak} processes at most (limit {PIDS}); "
        f"neighbour answered {neighbour.answers} times, missed {len(neighbour.failures)}"
    )
    assert neighbour.failures == []
    assert node.request("panel.localhost", "/accounts/login/")[0] == 200
    # A reload cannot fork new workers: gunicorn gives up, its sandbox ends and the bomb with
    # it; the next request starts the app afresh (after the back-off).
    answer = call(node.control_socket, {"op": "reload", "domain": "bomber.example"}, timeout=90)
    assert answer["status"] == "ERROR"
    wait_until(lambda: node.request("bomber.example", "/ping", timeout=10)[2] == "pong", 60)
    app = node.app("bomber.example")
    assert app["phase"] == "running" and app["failures"] >= 1
    assert len(groups.pids(f"u{uid}")) <= 4  # gunicorn and its two workers: the bomb is gone


def test_a_memory_bomb_is_held_to_its_owners_memory_and_the_app_comes_back(bomb_node):
    node = bomb_node
    uid = _bomber_uid(node)
    groups = cgroups.OwnerGroups(f"hosting-{node.name}")
    neighbour = Neighbour(node)
    neighbour.start()
    try:
        code, _, body = node.request("bomber.example", "/memory", timeout=60)
        # v1 and v2 both count the kills in a line "oom_kill N"
        counters = groups.read(f"u{uid}", "memory.oom_control") or groups.read(
            f"u{uid}", "memory.events"
        )
        start = neighbour.answers
        wait_until(lambda: neighbour.answers >= start + 5, 30, what="the neighbour")
    finally:
        neighbour.stop()
    assert code == 502 and "allocated everything" not in body  # its worker was killed
    assert neighbour.failures == []
    assert node.request("panel.localhost", "/accounts/login/")[0] == 200
    wait_until(lambda: node.request("bomber.example", "/ping", timeout=10)[2] == "pong", 60)
    kills = int(dict(line.split() for line in counters.splitlines())["oom_kill"])
    print(f"memory bomb: held to {MEMORY_MB} MiB, {kills} worker(s) killed; the neighbour answered")
    assert kills >= 1
