"""Per-owner limits through the cgroups the host offers: memory, number of processes, CPU share.

A host may mount cgroup v2 (the unified hierarchy), v1 controllers, or both (v1 memory, pids
and cpu beside a v2 hierarchy that holds none of them). Each controller is used from where it is
actually available, v2 first: ``detect()`` reads ``/proc/self/mountinfo``, ``/proc/self/cgroup``
and the v2 ``cgroup.controllers`` file.

Rules:
1. Groups are made under the node's own cgroup in each hierarchy (``<own>/<name>/<owner>``), so
   whatever limits the node itself runs under still bound its apps, and nothing else's groups
   are touched.
2. One group per owner: every app process of an owner (all its apps) is in it, so a fork bomb or
   a memory bomb exhausts that owner's budget only.
3. The pure part (``parse_layout``, ``limit_writes``, ``describe``) decides; ``OwnerGroups``
   only writes the files it is told to.
4. A process joins a group by writing its pid to ``cgroup.procs`` (the sandbox launcher does it
   before the app's command starts, so every descendant is counted).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

CONTROLLERS = ("memory", "pids", "cpu")
NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")
MiB = 1024 * 1024
CPU_WEIGHT_DEFAULT = 100  # v2's default weight; v1's cpu.shares default is 1024


@dataclass(frozen=True)
class Limits:
    """What each owner gets. ``None``: that limit is not set."""

    memory: int | None = 512 * MiB  # bytes, swap included where the host accounts it
    pids: int | None = 256
    cpu_weight: int | None = CPU_WEIGHT_DEFAULT  # 1..10000, relative to other owners

    def __post_init__(self) -> None:
        if self.memory is not None and self.memory < 4 * MiB:
            raise ValueError(f"memory limit {self.memory} bytes is below 4 MiB")
        if self.pids is not None and self.pids < 4:
            raise ValueError(f"pids limit {self.pids} is below 4")
        if self.cpu_weight is not None and not 1 <= self.cpu_weight <= 10000:
            raise ValueError(f"cpu weight {self.cpu_weight} is outside 1..10000")


@dataclass(frozen=True)
class Hierarchy:
    version: int  # 1 or 2
    mount: str  # where it is mounted
    own: str  # the node's cgroup in it, e.g. "/" or "/system.slice/node.service"
    controllers: frozenset[str]  # those of CONTROLLERS used through this hierarchy

    @property
    def base(self) -> Path:
        return Path(self.mount) / self.own.lstrip("/")


@dataclass(frozen=True)
class Layout:
    hierarchies: tuple[Hierarchy, ...] = ()
    notes: tuple[str, ...] = field(default=())  # why a controller is not used

    def hierarchy_for(self, controller: str) -> Hierarchy | None:
        for h in self.hierarchies:
            if controller in h.controllers:
                return h
        return None


# --- pure ----------------------------------------------------------------------------------
def parse_layout(mountinfo: str, proc_cgroup: str, v2_available: dict[str, str]) -> Layout:
    """Which hierarchy serves each controller.

    ``v2_available``: mount point of each v2 hierarchy -> the text of ``cgroup.controllers`` of
    the node's own group there (what may be delegated to groups below it).
    """
    own_v1: dict[str, str] = {}
    own_v2 = "/"
    for line in proc_cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, names, path = parts
        if names == "":
            own_v2 = path
        for name in names.split(","):
            if name:
                own_v1[name] = path
    v1_mounts: dict[str, str] = {}
    v2_mounts: list[str] = []
    for line in mountinfo.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        fields, tail = left.split(), right.split()
        if len(fields) < 5 or len(tail) < 3:
            continue
        mount_point = fields[4]
        fstype, options = tail[0], tail[2].split(",")
        if fstype == "cgroup2":
            v2_mounts.append(mount_point)
        elif fstype == "cgroup":
            for opt in options:
                if opt in CONTROLLERS and opt not in v1_mounts:
                    v1_mounts[opt] = mount_point
    hierarchies: list[Hierarchy] = []
    notes: list[str] = []
    taken: set[str] = set()
    for mount in v2_mounts:
        offered = set(v2_available.get(mount, "").split()) & set(CONTROLLERS)
        if offered:
            hierarchies.append(Hierarchy(2, mount, own_v2, frozenset(offered)))
            taken |= offered
            break
    by_mount: dict[str, set[str]] = {}
    for controller in CONTROLLERS:
        if controller in taken:
            continue
        mount = v1_mounts.get(controller)
        if mount is None:
            notes.append(f"no {controller} controller")
            continue
        by_mount.setdefault(mount, set()).add(controller)
    for mount, controllers in by_mount.items():
        own = own_v1.get(sorted(controllers)[0], "/")
        hierarchies.append(Hierarchy(1, mount, own, frozenset(controllers)))
    return Layout(tuple(hierarchies), tuple(notes))


def limit_writes(
    version: int, controllers: frozenset[str], limits: Limits
) -> list[tuple[str, str]]:
    """The files to write in an owner's group, in order: (file name, value).

    Files whose name ends with "?" are optional (the host may not account swap).
    """
    writes: list[tuple[str, str]] = []
    if "memory" in controllers and limits.memory is not None:
        if version == 2:
            writes += [("memory.max", str(limits.memory)), ("memory.swap.max?", "0")]
        else:
            writes += [
                ("memory.limit_in_bytes", str(limits.memory)),
                ("memory.memsw.limit_in_bytes?", str(limits.memory)),
            ]
    if "pids" in controllers and limits.pids is not None:
        writes.append(("pids.max", str(limits.pids)))
    if "cpu" in controllers and limits.cpu_weight is not None:
        if version == 2:
            writes.append(("cpu.weight", str(limits.cpu_weight)))
        else:
            writes.append(("cpu.shares", str(cpu_shares(limits.cpu_weight))))
    return writes


def cpu_shares(weight: int) -> int:
    """v1's ``cpu.shares`` for a v2 weight: default 100 is 1024, the same ratio elsewhere."""
    return max(2, weight * 1024 // CPU_WEIGHT_DEFAULT)


def describe(layout: Layout, limits: Limits) -> str:
    """One line for the node's start-up: what is in force, per owner."""
    parts: list[tuple[int, str]] = []
    for controller in CONTROLLERS:
        h = layout.hierarchy_for(controller)
        if h is None:
            continue
        if controller == "memory" and limits.memory is not None:
            parts.append((h.version, f"memory {_size(limits.memory)}"))
        elif controller == "pids" and limits.pids is not None:
            parts.append((h.version, f"pids {limits.pids}"))
        elif controller == "cpu" and limits.cpu_weight is not None:
            if h.version == 2:
                parts.append((2, f"cpu weight {limits.cpu_weight}"))
            else:
                parts.append((1, f"cpu shares {cpu_shares(limits.cpu_weight)}"))
    if not parts:
        why = "; ".join(layout.notes) or "no limits set"
        return f"cgroups: no limits in force ({why})"
    versions = {v for v, _ in parts}
    if len(versions) == 1:
        line = f"cgroups v{versions.pop()}: " + ", ".join(text for _, text in parts)
    else:
        line = "cgroups: " + ", ".join(f"{text} (v{v})" for v, text in parts)
    line += " per owner"
    if layout.notes:
        line += f" ({'; '.join(layout.notes)})"
    return line


def _size(n: int) -> str:
    for unit, size in (("G", 1024**3), ("M", MiB), ("K", 1024)):
        if n % size == 0:
            return f"{n // size}{unit}"
    return f"{n}B"


# --- I/O -----------------------------------------------------------------------------------
def detect(proc: Path = Path("/proc/self")) -> Layout:
    mountinfo = (proc / "mountinfo").read_text()
    proc_cgroup = (proc / "cgroup").read_text()
    own_v2 = "/"
    for line in proc_cgroup.splitlines():
        if line.startswith("0::"):
            own_v2 = line[3:]
    available: dict[str, str] = {}
    for line in mountinfo.splitlines():
        left, _, right = line.partition(" - ")
        if right.split()[:1] == ["cgroup2"]:
            mount = left.split()[4]
            with contextlib.suppress(OSError):
                available[mount] = (
                    Path(mount) / own_v2.lstrip("/") / "cgroup.controllers"
                ).read_text()
    return parse_layout(mountinfo, proc_cgroup, available)


class OwnerGroups:
    """The per-owner groups of one node: ``<own cgroup>/<name>/<owner>`` in each hierarchy."""

    def __init__(
        self, name: str = "hosting", *, limits: Limits | None = None, layout: Layout | None = None
    ) -> None:
        if not NAME_RE.match(name):
            raise ValueError(f"cgroup name {name!r} must match {NAME_RE.pattern}")
        self.name = name
        self.limits = limits or Limits()
        self.layout = detect() if layout is None else layout
        self._enabled_v2 = False

    def in_force(self) -> str:
        return describe(self.layout, self.limits)

    def paths(self, owner: str) -> tuple[str, ...]:
        if not NAME_RE.match(owner):
            raise ValueError(f"owner group name {owner!r} must match {NAME_RE.pattern}")
        return tuple(str(h.base / self.name / owner) for h in self.layout.hierarchies)

    def ensure(self, owner: str) -> tuple[str, ...]:
        """Create the owner's groups with the limits written; the directories to join."""
        dirs = self.paths(owner)
        for h, directory in zip(self.layout.hierarchies, dirs, strict=True):
            path = Path(directory)
            if h.version == 2:
                self._delegate(h)
            path.mkdir(parents=True, exist_ok=True)
            for filename, value in limit_writes(h.version, h.controllers, self.limits):
                optional = filename.endswith("?")
                target = path / filename.rstrip("?")
                if optional and not target.exists():
                    continue
                target.write_text(value)
        return dirs

    def _delegate(self, h: Hierarchy) -> None:
        """Enable the controllers for the groups below the node's own (v2's subtree_control)."""
        wanted = " ".join(f"+{c}" for c in sorted(h.controllers))
        node_dir = h.base / self.name
        node_dir.mkdir(parents=True, exist_ok=True)
        for directory in (h.base, node_dir):
            current = set((directory / "cgroup.subtree_control").read_text().split())
            if not h.controllers <= current:
                try:
                    (directory / "cgroup.subtree_control").write_text(wanted)
                except OSError as exc:
                    raise OSError(
                        f"cannot enable {wanted} in {directory} (a v2 group with processes in "
                        f"it cannot delegate; run the node in a group of its own): {exc}"
                    ) from exc

    def join(self, owner: str, pid: int) -> None:
        for directory in self.paths(owner):
            Path(directory, "cgroup.procs").write_text(f"{pid}\n")

    def pids(self, owner: str) -> set[int]:
        found: set[int] = set()
        for directory in self.paths(owner):
            with contextlib.suppress(FileNotFoundError):
                text = Path(directory, "cgroup.procs").read_text()
                found.update(int(p) for p in text.split())
        return found

    def read(self, owner: str, filename: str) -> str | None:
        """A file of the owner's group from whichever hierarchy has it (``memory.failcnt``...)."""
        for directory in self.paths(owner):
            path = Path(directory, filename)
            if path.exists():
                return path.read_text()
        return None

    def kill(self, owner: str, timeout: float = 10.0) -> None:
        """SIGKILL every process of the owner's groups until they are empty (fork bombs too)."""
        deadline = time.monotonic() + timeout
        for directory in self.paths(owner):
            kill_file = Path(directory, "cgroup.kill")
            if kill_file.exists():
                kill_file.write_text("1")
        while pids := self.pids(owner):
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(pids)} processes still in {owner}'s groups")
            time.sleep(0.01)

    def remove(self, owner: str) -> bool:
        """Remove the owner's groups if no process is left in them; True when all are gone."""
        gone = True
        for directory in self.paths(owner):
            try:
                os.rmdir(directory)
            except FileNotFoundError:
                pass
            except OSError:  # EBUSY: processes still in it
                gone = False
        return gone

    def remove_empty(self) -> list[str]:
        """Remove every empty owner group of this node, and its own directory when empty."""
        removed: list[str] = []
        for h in self.layout.hierarchies:
            node_dir = h.base / self.name
            if not node_dir.is_dir():
                continue
            for child in node_dir.iterdir():
                if child.is_dir():
                    with contextlib.suppress(OSError):
                        os.rmdir(child)
                        removed.append(str(child))
            with contextlib.suppress(OSError):
                os.rmdir(node_dir)
        return removed
