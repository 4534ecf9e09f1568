"""Per-owner cgroups: the pure rules, the host's hierarchies for real, and bombs contained.

The containment tests run a fork bomb and a memory bomb in one owner's sandboxed app while a
neighbour (another owner) keeps answering and the test process keeps forking.
"""

from __future__ import annotations

import os
import subprocess
import uuid

import pytest

from tests.webapps.node import harness
from webapps.node import cgroups
from webapps.node.cgroups import Hierarchy, Layout, Limits

MOUNTINFO_HYBRID = """\
30 25 0:26 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
34 30 0:30 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 30 0:31 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 30 0:32 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
"""
CGROUP_HYBRID = "8:pids:/\n4:memory:/jobs/7\n1:cpu:/\n0::/\n"
MOUNTINFO_V2 = "29 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"


def test_it_uses_v1_controllers_when_the_v2_hierarchy_holds_none_of_them():
    layout = cgroups.parse_layout(
        MOUNTINFO_HYBRID, CGROUP_HYBRID, {"/sys/fs/cgroup/unified": "hugetlb\n"}
    )
    assert layout.hierarchy_for("memory") == Hierarchy(
        1, "/sys/fs/cgroup/memory", "/jobs/7", frozenset({"memory"})
    )
    assert layout.hierarchy_for("pids").mount == "/sys/fs/cgroup/pids"
    assert layout.hierarchy_for("cpu").version == 1


def test_it_prefers_v2_for_the_controllers_v2_offers():
    layout = cgroups.parse_layout(
        MOUNTINFO_HYBRID, CGROUP_HYBRID, {"/sys/fs/cgroup/unified": "memory pids\n"}
    )
    assert layout.hierarchy_for("memory").version == 2
    assert layout.hierarchy_for("pids").version == 2
    assert layout.hierarchy_for("cpu").version == 1


def test_it_reads_a_pure_v2_host():
    layout = cgroups.parse_layout(
        MOUNTINFO_V2, "0::/system.slice/node.service\n", {"/sys/fs/cgroup": "cpu memory pids io"}
    )
    (only,) = layout.hierarchies
    assert only.version == 2 and only.controllers == {"cpu", "memory", "pids"}
    assert str(only.base) == "/sys/fs/cgroup/system.slice/node.service"


def test_it_writes_the_limits_each_version_names():
    limits = Limits(memory=128 * cgroups.MiB, pids=64, cpu_weight=50)
    every = frozenset(cgroups.CONTROLLERS)
    assert cgroups.limit_writes(2, every, limits) == [
        ("memory.max", str(128 * cgroups.MiB)),
        ("memory.swap.max?", "0"),
        ("pids.max", "64"),
        ("cpu.weight", "50"),
    ]
    assert cgroups.limit_writes(1, every, limits) == [
        ("memory.limit_in_bytes", str(128 * cgroups.MiB)),
        ("memory.memsw.limit_in_bytes?", str(128 * cgroups.MiB)),
        ("pids.max", "64"),
        ("cpu.shares", "512"),
    ]
    assert cgroups.limit_writes(1, frozenset({"pids"}), Limits(pids=None)) == []


def test_it_says_what_is_in_force_in_one_line():
    v2 = Layout((Hierarchy(2, "/sys/fs/cgroup", "/", frozenset(cgroups.CONTROLLERS)),))
    assert cgroups.describe(v2, Limits()) == (
        "cgroups v2: memory 512M, pids 256, cpu weight 100 per owner"
    )
    mixed = Layout(
        (
            Hierarchy(2, "/u", "/", frozenset({"memory"})),
            Hierarchy(1, "/p", "/", frozenset({"pids"})),
        ),
        ("no cpu controller",),
    )
    assert cgroups.describe(mixed, Limits()) == (
        "cgroups: memory 512M (v2), pids 256 (v1) per owner (no cpu controller)"
    )
    assert cgroups.describe(Layout((), ("no memory controller",)), Limits()) == (
        "cgroups: no limits in force (no memory controller)"
    )


def test_it_refuses_limits_that_would_stop_every_app():
    with pytest.raises(ValueError, match="below 4 MiB"):
        Limits(memory=1024)
    with pytest.raises(ValueError, match=r"outside 1\.\.10000"):
        Limits(cpu_weight=0)


# --- for real, as root ---------------------------------------------------------------------
def need_cgroups() -> cgroups.Layout:
    if os.geteuid() != 0:
        pytest.skip("creating cgroups needs root")
    layout = cgroups.detect()
    missing = [c for c in cgroups.CONTROLLERS if layout.hierarchy_for(c) is None]
    if missing:
        pytest.skip(f"this host offers no {', '.join(missing)} controller")
    return layout


@pytest.fixture
def groups():
    need_cgroups()
    owner_groups = cgroups.OwnerGroups(
        f"hosting-test-{uuid.uuid4().hex[:8]}",
        limits=Limits(memory=160 * cgroups.MiB, pids=48, cpu_weight=100),
    )
    try:
        yield owner_groups
    finally:
        for owner in ("u1", "bomber", "neighbour"):
            owner_groups.kill(owner)
            owner_groups.remove(owner)
        owner_groups.remove_empty()


def test_it_creates_an_owners_group_with_its_limits_and_removes_it_when_empty(groups):
    dirs = groups.ensure("u1")
    assert all(os.path.isdir(d) for d in dirs)
    assert groups.read("u1", "pids.max").strip() == "48"
    process = subprocess.Popen(["sleep", "30"])
    try:
        groups.join("u1", process.pid)
        assert groups.pids("u1") == {process.pid}
        assert groups.remove("u1") is False  # a process is still in it
    finally:
        groups.kill("u1")
        process.wait(10)
    assert groups.remove("u1") is True
    assert not any(os.path.exists(d) for d in dirs)
    print(groups.in_force())


@pytest.fixture
def two_owners(tmp_path, groups):
    isolation = harness.need_isolation()
    bomber = harness.make_tenant(tmp_path, "bomber", 52011, "bomb_app.py")
    neighbour = harness.make_tenant(tmp_path, "neighbour", 52012, "bomb_app.py")
    try:
        for tenant in (bomber, neighbour):
            harness.start(tenant, isolation, workers=2, cgroups=groups.ensure(tenant.name))
        yield bomber, neighbour
    finally:
        for tenant in (bomber, neighbour):
            groups.kill(tenant.name)
            harness.stop(tenant)


def test_a_fork_bomb_exhausts_its_owners_pids_only(two_owners, groups):
    bomber, neighbour = two_owners
    assert harness.get(bomber.socket, "/fork")[0] == 200
    limit = int(groups.read("bomber", "pids.max"))

    def refused_forks() -> int:  # "max N": forks refused at the limit
        return int((groups.read("bomber", "pids.events") or "max 0").split()[-1])

    harness.wait_until(refused_forks, 30, what="the bomb to hit pids.max")
    assert len(groups.pids("bomber")) <= limit
    for _ in range(5):
        assert harness.get(neighbour.socket, "/ping", timeout=10) == (200, b"pong")
    assert subprocess.run(["true"], timeout=10).returncode == 0  # the node can still fork
    assert len(groups.pids("neighbour")) < 10
    groups.kill("bomber")  # the operator's remedy: the owner's processes, all of them
    assert groups.pids("bomber") == set()
    assert harness.get(neighbour.socket, "/ping")[0] == 200


def test_a_memory_bomb_is_stopped_at_its_owners_limit(two_owners, groups):
    bomber, neighbour = two_owners
    with pytest.raises(OSError):  # the worker is killed mid-request: no answer
        harness.get(bomber.socket, "/memory", timeout=60)
    # v1 and v2 both count the kills in a line "oom_kill N".
    counters = groups.read("bomber", "memory.oom_control") or groups.read("bomber", "memory.events")
    kills = dict(line.split() for line in counters.splitlines())["oom_kill"]
    assert int(kills) >= 1
    assert harness.get(neighbour.socket, "/ping") == (200, b"pong")
    # gunicorn's master survived and replaced its worker: the app answers again.
    harness.wait_until(
        lambda: harness.get(bomber.socket, "/ping", 2)[0] == 200, 30, what="the bomber's app"
    )
