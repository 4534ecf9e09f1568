"""The egress rules a node installs (nftables) live as long as the node: removed when it stops,
replaced (never added to) when a run that was killed left them behind, and another node's
rules on the same host are left alone. Real `manage.py runnode` processes, as root, each test
in a network namespace of its own so that the host's rules are never touched."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.support import free_port, wait_until
from tests.webapps.node import harness
from tests.webapps.node.support import MANAGE, copy_db, platform_env, repo_root
from webapps.node import sandbox

NODE = "e1"


def nft(ns: str, *args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(
        ["ip", "netns", "exec", ns, "nft", *args],
        input=stdin.encode(), capture_output=True, timeout=10,
    )  # fmt: skip


def tables(ns: str) -> set[str]:
    out = nft(ns, "list", "tables").stdout.decode()
    return {line.split()[-1] for line in out.splitlines() if line.startswith("table inet")}


def rules(ns: str, table: str) -> str:
    result = nft(ns, "list", "table", "inet", table)
    assert result.returncode == 0, result.stderr
    return result.stdout.decode()


class Node:
    """``manage.py runnode`` inside network namespace ``ns`` (no Redis: ``--no-routes``)."""

    def __init__(self, ns: str, workdir: Path, env: dict[str, str]) -> None:
        self.ns, self.env = ns, env
        self.run_dir = workdir / f"r-{NODE}"
        self.output = workdir / f"{NODE}.out"
        self.argv = [
            "ip", "netns", "exec", ns, sys.executable, MANAGE, "runnode",
            "--name", NODE, "--listen", f"127.0.0.1:{free_port()}",
            "--run-dir", str(self.run_dir), "--log-dir", str(workdir / f"l-{NODE}"),
            "--no-routes",
        ]  # fmt: skip
        self.process: subprocess.Popen | None = None

    def start(self) -> Node:
        with contextlib.suppress(FileNotFoundError):
            (self.run_dir / "control.sock").unlink()  # left by a killed run
        with open(self.output, "ab") as out:
            self.process = subprocess.Popen(
                self.argv, env=self.env, cwd=repo_root(), stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip

        def up() -> bool:
            if self.process.poll() is not None:
                raise RuntimeError(f"node exited:\n{self.output.read_text()[-3000:]}")
            # The rules are installed before the control socket is made.
            return (self.run_dir / "control.sock").exists()

        wait_until(up, 60, what=f"node {NODE} in {self.ns}")
        return self

    def signal(self, sig: int) -> int:
        assert self.process is not None
        os.killpg(self.process.pid, sig)
        return self.process.wait(30)

    def cleanup(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)


@pytest.fixture
def netns(short_tmp, template_db):
    """A network namespace (loopback up) and a node to start in it."""
    harness.need_isolation(egress=True)
    ns = f"hsbe{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", ns], check=True, capture_output=True, timeout=10)
    nodes: list[Node] = []
    try:
        subprocess.run(
            ["ip", "-n", ns, "link", "set", "lo", "up"], check=True, capture_output=True, timeout=10
        )
        (short_tmp / "home").mkdir()
        env = {**platform_env(short_tmp, copy_db(template_db, short_tmp)), "LOG_LEVEL": "INFO"}

        def node() -> Node:
            nodes.append(Node(ns, short_tmp, env))
            return nodes[-1]

        yield ns, node
    finally:
        for n in nodes:
            n.cleanup()
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)


def test_a_node_removes_its_egress_rules_when_it_stops_and_leaves_another_nodes(netns):
    ns, make = netns
    mine = sandbox.egress_table(NODE)
    other = sandbox.egress_table("e2")
    # Another node on the same host, with its own table.
    assert (
        nft(ns, "-f", "-", stdin=sandbox.egress_ruleset("100.72.0.0/16", (), other)).returncode == 0
    )

    node = make().start()
    assert tables(ns) == {mine, other}
    installed = rules(ns, mine)
    for chain in ("chain input", "chain forward", "chain postrouting", "masquerade"):
        assert chain in installed
    assert "isolation: on" in node.output.read_text()

    assert node.signal(signal.SIGTERM) == 0
    assert tables(ns) == {other}
    assert "replaced" not in node.output.read_text()


def test_rules_left_by_a_killed_node_are_replaced_at_its_next_start(netns):
    ns, make = netns
    mine = sandbox.egress_table(NODE)
    node = make().start()
    fresh = rules(ns, mine)
    node.signal(signal.SIGKILL)
    assert tables(ns) == {mine}, "a killed node cannot remove its rules"
    # Whatever the table holds now is what the killed run left: mark it.
    assert nft(ns, "add", "chain", "inet", mine, "leftover").returncode == 0
    assert "chain leftover" in rules(ns, mine)

    node.start()
    assert rules(ns, mine) == fresh  # replaced whole: no leftover, no rule twice
    assert f"egress rules left by an earlier run replaced (inet {mine})" in node.output.read_text()
    assert node.signal(signal.SIGTERM) == 0
    assert tables(ns) == set()


def test_each_node_has_a_table_of_its_own_whatever_its_name():
    assert sandbox.egress_table("b1") == "hosting_sandbox_b1"
    odd = sandbox.egress_table("node-1.eu")
    assert odd.startswith("hosting_sandbox_node_1_eu_") and odd != sandbox.egress_table("node_1_eu")
    assert all(c.isalnum() or c == "_" for c in sandbox.egress_table("ü b/1" * 30))
    assert f"table inet {odd} {{" in sandbox.egress_ruleset("100.72.0.0/16", (), odd)
