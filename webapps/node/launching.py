"""How the supervisor launches one app process: as the node's user, or isolated (decision 0045).

``plan_launch`` turns an app's gunicorn command into what ``create_subprocess_exec`` runs:

- a node that does not isolate (``isolation=None``: not root, told that apps share its user)
  runs gunicorn as itself, as it always did;
- an isolating node runs a **user app** in its owner's sandbox (``webapps.node.sandbox``): the
  owner's uid and gid from the app lookup, the owner's cgroups, its own socket directory, the
  home given to its owner (mode 0700);
- and the **panel** (a system app) as the panel's own system uid and gid, with no groups, no
  capabilities and ``no_new_privs``, outside any sandbox (it needs the database, Redis and the
  control socket), so that no tenant's uid can read what it holds.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from webapps.node import homefs, sandbox
from webapps.node.cgroups import Limits, OwnerGroups
from webapps.node.spec import GUNICORN_CONF, AppSpec, SourceRefused, owner_home


@dataclass(frozen=True)
class Isolated:
    """How an isolating node runs apps: the detected tools, the panel's ids, limits, egress."""

    isolation: sandbox.Isolation
    panel_uid: int
    panel_gid: int
    groups: OwnerGroups | None = None
    egress: bool = True
    egress_pool: str = sandbox.DEFAULT_EGRESS_POOL

    def __post_init__(self) -> None:
        for name in ("panel_uid", "panel_gid"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name} must be a positive integer (not root), not {value!r}")


@dataclass(frozen=True)
class Plan:
    """``create_subprocess_exec(*argv, env=env, cwd=cwd, pass_fds=pass_fds)``; ``group``: the
    owner's cgroup name when the process is in one."""

    argv: list[str]
    env: dict[str, str]
    cwd: str
    pass_fds: tuple[int, ...]
    group: str | None = None
    uid: int | None = field(default=None)  # who the app's processes run as (None: the node)


def owner_group(uid: int) -> str:
    return f"u{uid}"


def plan_launch(
    spec: AppSpec,
    *,
    argv: list[str],
    env: dict[str, str],
    cwd: Path,
    socket: Path,
    home_root: Path,
    fds: tuple[int, ...],
    isolated: Isolated | None,
    python: str,
    server_path: str = "",
    shared: tuple[str, ...] = (),
) -> Plan:
    """The launch of ``argv`` (run by ``python``, with the node's gunicorn copy at
    ``server_path`` and the platform's package sets ``shared``, read-only in a sandbox).

    ``SourceRefused`` for an app that may not run as it is, other ``ValueError``/``OSError``/
    ``RuntimeError`` when its sandbox cannot be prepared."""
    directory = socket.parent
    if isolated is None:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        return Plan(list(argv), env, str(cwd), fds)
    if spec.system:
        uid, gid = isolated.panel_uid, isolated.panel_gid
        sandbox.prepare_socket_dir(directory, uid, gid)
        for fd in fds:  # gunicorn reopens them through /dev/fd/N as the panel's uid
            os.fchown(fd, uid, gid)
        setpriv = isolated.isolation.setpriv or "setpriv"
        return Plan([*sandbox.setpriv_args(setpriv, uid, gid), *argv], env, str(cwd), fds, uid=uid)
    uid, gid = spec.uid, spec.gid
    if uid <= 0 or gid <= 0:
        raise SourceRefused(
            f"refused to start: the owner {spec.owner!r} has no uid and gid from the panel"
        )
    if isolated.panel_uid in (uid, gid) or isolated.panel_gid in (uid, gid):
        raise SourceRefused(f"refused to start: uid {uid} / gid {gid} is the panel's")
    home = owner_home(spec, home_root)
    try:
        os.close(homefs.open_home(home_root, spec.owner, uid=uid, gid=gid))
    except homefs.HomePathRefused as exc:
        raise SourceRefused(f"refused to start: {exc}") from None
    sandbox.prepare_socket_dir(directory, uid, gid)
    group = owner_group(uid)
    cgroups = isolated.groups.ensure(group) if isolated.groups is not None else ()
    read_only = (
        str(GUNICORN_CONF),
        *((server_path,) if server_path else ()),
        *(p for p in shared if Path(p).is_dir()),
        *(p for p in sandbox.python_paths(python) if not Path(p).is_relative_to(home)),
    )
    box = sandbox.SandboxSpec(
        uid=uid,
        gid=gid,
        home=str(home),
        socket_dir=str(directory),
        cwd=str(cwd),
        read_only=read_only,
        egress=isolated.egress,
        egress_pool=isolated.egress_pool,
        cgroups=cgroups,
        keep_fds=fds,
    )
    launched = sandbox.launch(box, argv, env, isolation=isolated.isolation)
    return Plan(launched.argv, launched.env, "/", launched.pass_fds, group, uid)


def prepare(
    node_name: str,
    *,
    apps_share_node_user: bool,
    panel_uid: int,
    panel_gid: int,
    limits: Limits | None = None,
    egress: bool = True,
    egress_pool: str = sandbox.DEFAULT_EGRESS_POOL,
    detect: Callable[[], sandbox.Isolation] = sandbox.detect_isolation,
) -> tuple[Isolated | None, tuple[str, ...]]:
    """What the node runs apps with, and the start-up lines that say so.

    Raises ``sandbox.IsolationUnavailable`` when the host cannot isolate apps and the node was
    not told that they may share its user.
    """
    isolation = detect()
    line = sandbox.require_isolation(isolation, apps_share_node_user=apps_share_node_user)
    if not isolation.available:
        return None, (f"isolation: off ({line})",)
    groups = OwnerGroups(f"hosting-{node_name}", limits=limits)
    groups.remove_empty()
    if egress and not isolation.egress:
        raise sandbox.IsolationUnavailable(
            "egress is on but iproute2, nsenter or nftables is missing (make sandbox-tools), "
            "or turn egress off (--no-egress, NODE_APP_EGRESS=0)"
        )
    isolated = Isolated(
        isolation=isolation,
        panel_uid=panel_uid,
        panel_gid=panel_gid,
        groups=groups,
        egress=egress,
        egress_pool=egress_pool,
    )
    where = "egress through the node" if egress else "no egress (switched off)"
    summary = (
        f"isolation: on (bubblewrap sandbox per app process, each as its owner's uid; {where}; "
        f"the panel as uid {panel_uid})"
    )
    return isolated, (summary, groups.in_force())
