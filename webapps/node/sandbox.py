"""The sandbox every tenant app process runs in: bubblewrap and setpriv (decision 0045).

A tenant's code is hostile. An app's server runs inside a sandbox made of:

- **credentials**: its owner's uid and gid, no supplementary groups, no capabilities (bounding
  set empty), ``no_new_privs`` (util-linux ``setpriv``, the last step before the app's command);
- **mounts** (its own mount namespace; bwrap's root is an empty tmpfs): the system (``/usr``,
  ``/etc``) read-only, the interpreter and the node-supplied server code read-only, the owner's
  home and the app's socket directory writable, a private ``/tmp``; nothing else exists: no
  other home, no panel code or state, no run directory, no node socket;
- **processes**: its own pid namespace with its own ``/proc``: no other process's environment,
  command line or signals. Its pid 1 is bwrap's reaper, which exits when the app's command
  does; the kernel then kills whatever the app left behind;
- **network**: its own network namespace. Only its own loopback, or with egress on, one end of
  a veth pair whose other end is in the node's namespace, where nftables (``egress_ruleset``)
  masquerades its outbound traffic and drops every packet from it addressed to the node host
  itself, so the host's loopback services (Redis, the database, the proxy's admin port, other
  apps, the node) and its other addresses are not reachable, nor are other sandboxes;
- **file descriptors**: those the node names (``keep_fds``) and stdin/stdout/stderr, no other;
- **limits**: the per-owner cgroups (``webapps.node.cgroups``) the process is put in before the
  app's command starts, so everything it forks is counted.

Rule 1: the pure core (``SandboxSpec`` -> bwrap's arguments) decides what the sandbox contains;
the shell only runs it. Rule 2: nothing tenant-controlled reaches a process that runs as root:
the app's environment travels to bwrap in its ``--setenv`` arguments through a pipe, never as
the environment of the launcher, bwrap or ip (an ``LD_PRELOAD`` there would run as root).

How the node uses it: ``launch(spec, argv, env)`` gives the argv and environment of the
*launcher* (``webapps.node.launcher``, decision 0111), a small root process that starts bwrap
with the options computed here, places the sandbox in its cgroups, gives it its interface,
lets the app's command run, forwards the signals it gets (HUP, TERM, ...) to the app's pid 1,
and exits as the app exited. Killing the launcher's process group kills bwrap; bwrap's
``--die-with-parent`` then kills the sandbox's pid 1, and with it every process of the
sandbox; the veth pair goes with its namespace.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from webapps.node import launcher

CONFIG_ENV = launcher.CONFIG_ENV  # the launcher's configuration (only the launcher reads it)
# The directory that holds the ``webapps`` package: the launcher is imported from it.
CODE_ROOT = Path(__file__).resolve().parent.parent.parent
# Where bwrap, setpriv, ip, nsenter and nft are looked up (never the node's PATH).
TOOL_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Top-level entries that are symlinks into /usr on a merged-/usr system, or directories.
SYSTEM_DIRS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
READ_ONLY_SYSTEM = ("/usr", "/etc")
# Paths that are never bound into a sandbox whatever a spec asks.
FORBIDDEN = ("/", "/proc", "/sys", "/dev", "/run", "/var/run")
TMP_SIZE = 64 * 1024 * 1024
DEFAULT_EGRESS_POOL = "100.72.0.0/16"  # RFC 6598 shared space: one /30 per running sandbox
_MAX_PYVENV_BYTES = 64 * 1024


class SandboxError(RuntimeError):
    """The node's egress rules could not be installed or removed."""


LAUNCH_FAILED = launcher.LAUNCH_FAILED


# --- the pure core -------------------------------------------------------------------------
@dataclass(frozen=True)
class SandboxSpec:
    """Everything one sandbox contains. Plain data; ``bwrap_args`` turns it into arguments.

    ``read_only``: extra paths visible read-only (the interpreter, the node's gunicorn config;
    see ``python_paths``). ``writable``: extra writable paths besides ``home`` and
    ``socket_dir``. ``cgroups``: cgroup directories the sandbox's processes join.
    ``keep_fds``: descriptors the app's command inherits besides 0, 1 and 2.
    """

    uid: int
    gid: int
    home: str
    socket_dir: str
    cwd: str = ""  # default: the home
    read_only: tuple[str, ...] = ()
    writable: tuple[str, ...] = ()
    egress: bool = False
    egress_pool: str = DEFAULT_EGRESS_POOL
    cgroups: tuple[str, ...] = ()
    keep_fds: tuple[int, ...] = ()
    hostname: str = "app"
    tmp_size: int = TMP_SIZE

    def __post_init__(self) -> None:
        for name in ("uid", "gid"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(
                    f"sandbox {name} must be a positive integer (not root), not {value!r}"
                )
            if value >= 2**32 - 1:
                raise ValueError(f"sandbox {name} {value} is out of range")
        for name in ("home", "socket_dir"):
            _check_path(name, getattr(self, name))
        if self.cwd:
            _check_path("cwd", self.cwd)
            if not _within(self.cwd, self.home):
                raise ValueError(f"sandbox cwd {self.cwd} is outside the home {self.home}")
        for path in (*self.read_only, *self.writable):
            _check_path("bind", path)
        for fd in self.keep_fds:
            if not isinstance(fd, int) or fd < 3:
                raise ValueError(f"keep_fds names {fd!r}: only descriptors from 3 up are passed")
        ipaddress.IPv4Network(self.egress_pool)  # ValueError names a bad pool
        if self.tmp_size <= 0:
            raise ValueError("tmp_size must be positive")

    @property
    def workdir(self) -> str:
        return self.cwd or self.home


def _check_path(what: str, path: str) -> None:
    if not isinstance(path, str) or not path.startswith("/"):
        raise ValueError(f"sandbox {what} path {path!r} is not absolute")
    parts = path.split("/")
    if ".." in parts or "." in parts or "\0" in path:
        raise ValueError(f"sandbox {what} path {path!r} is not normalised")
    normal = _normal(path)
    for forbidden in FORBIDDEN:
        if normal == forbidden:
            raise ValueError(f"sandbox {what} path {path!r} may not be bound into a sandbox")
    if normal == "/proc" or normal.startswith(("/proc/", "/sys/", "/dev/")):
        raise ValueError(f"sandbox {what} path {path!r} may not be bound into a sandbox")


def _normal(path: str) -> str:
    return "/" + "/".join(p for p in path.split("/") if p)


def _within(path: str, parent: str) -> bool:
    path, parent = _normal(path), _normal(parent)
    return path == parent or path.startswith(parent.rstrip("/") + "/")


@dataclass(frozen=True)
class HostLayout:
    """How the host's top-level system directories look: symlink targets or real directories."""

    symlinks: tuple[tuple[str, str], ...] = ()  # ("/bin", "usr/bin")
    directories: tuple[str, ...] = ()  # ("/lib64",) on a system without merged /usr


def host_layout() -> HostLayout:
    symlinks, directories = [], []
    for path in SYSTEM_DIRS:
        if os.path.islink(path):
            symlinks.append((path, os.readlink(path)))
        elif os.path.isdir(path):
            directories.append(path)
    return HostLayout(tuple(symlinks), tuple(directories))


def pyvenv(venv: Path) -> dict[str, str]:
    """The keys of ``<venv>/pyvenv.cfg`` (lower-cased); {} when it is missing or unreadable."""
    try:
        with open(venv / "pyvenv.cfg", "rb") as stream:
            text = stream.read(_MAX_PYVENV_BYTES).decode("utf-8", errors="replace")
    except OSError:
        return {}
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, equals, value = line.partition("=")
        if equals:
            values[key.strip().lower()] = value.strip()
    return values


def python_paths(python: str) -> tuple[str, ...]:
    """The directories an interpreter needs to run: its virtualenv and its base installation.

    Reads ``pyvenv.cfg`` for the base (``home = .../bin``). Paths under ``/usr`` are left out:
    the system is in every sandbox anyway.
    """
    exe = Path(python)
    paths: list[Path] = []
    venv = exe.parent.parent
    if (venv / "pyvenv.cfg").is_file():
        paths.append(venv)
        home = pyvenv(venv).get("home", "")
        if home:
            paths.append(Path(home).resolve().parent)
    real = exe.resolve()
    paths.append(real.parent.parent)
    out: list[str] = []
    for path in paths:
        text = str(path)
        if any(_within(text, system) for system in READ_ONLY_SYSTEM) or text == "/":
            continue
        if text not in out:
            out.append(text)
    return tuple(out)


def setpriv_args(setpriv: str, uid: int, gid: int) -> list[str]:
    """The credentials step: the owner's ids, no groups, no capabilities, no new privileges."""
    return [
        setpriv,
        f"--reuid={uid}",
        f"--regid={gid}",
        "--clear-groups",
        "--inh-caps=-all",
        "--bounding-set=-all",
        "--no-new-privs",
        # Changing the uid clears any parent-death signal: the app dies with bwrap's pid 1.
        "--pdeathsig=SIGKILL",
        "--",
    ]


def bwrap_args(
    spec: SandboxSpec,
    argv: list[str],
    env: dict[str, str],
    *,
    layout: HostLayout,
    setpriv: str = "/usr/bin/setpriv",
    info_fd: int | None = None,
    block_fd: int | None = None,
) -> list[str]:
    """bubblewrap's arguments (without the program name) that run ``argv`` inside ``spec``."""
    if not argv:
        raise ValueError("no command to run in the sandbox")
    for key in env:
        if not key or "=" in key or "\0" in key:
            raise ValueError(f"environment variable name {key!r} is not valid")
    args = [
        "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
        "--unshare-cgroup-try",
        # bwrap's own pid 1 (root, no capabilities) reaps orphans; it dies with its parent,
        # and with it everything in the namespace.
        "--die-with-parent", "--new-session",
        # Only what setpriv needs to become the owner (and bwrap to enter the owner's 0700
        # home for --chdir); setpriv then drops them all and empties the bounding set.
        "--cap-drop", "ALL",
        "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--cap-add", "CAP_SETPCAP",
        "--cap-add", "CAP_DAC_READ_SEARCH",
        "--hostname", spec.hostname,
    ]  # fmt: skip
    if info_fd is not None:
        args += ["--info-fd", str(info_fd)]
    if block_fd is not None:
        args += ["--block-fd", str(block_fd)]
    for path in READ_ONLY_SYSTEM:
        args += ["--ro-bind", path, path]
    for path, target in layout.symlinks:
        args += ["--symlink", target, path]
    for path in layout.directories:
        args += ["--ro-bind", path, path]
    args += ["--proc", "/proc", "--dev", "/dev"]
    # Private and writable by the app (sticky, as on any system): tempfile needs one.
    args += ["--perms", "1777", "--size", str(spec.tmp_size), "--tmpfs", "/tmp"]
    args += ["--perms", "1777", "--size", str(spec.tmp_size), "--tmpfs", "/dev/shm"]
    created = {"/", "/tmp", "/dev", "/proc", *READ_ONLY_SYSTEM}
    created.update(path for path, _ in layout.symlinks)
    created.update(layout.directories)
    binds: list[tuple[str, str]] = []
    for path in spec.read_only:
        binds.append(("--ro-bind", _normal(path)))
    for path in (spec.home, spec.socket_dir, *spec.writable):
        binds.append(("--bind", _normal(path)))
    # Parents before children, so a bind inside another bind lands on top of it.
    binds.sort(key=lambda b: (b[1].count("/"), b[1]))
    bound: list[str] = []
    for option, path in binds:
        if path in bound:
            continue
        if option == "--ro-bind" and any(_within(path, s) for s in READ_ONLY_SYSTEM):
            continue  # already visible read-only
        inside_bind = any(_within(path, b) for b in bound)
        if not inside_bind:
            # bwrap would create missing parents 0700 (root's): make them traversable.
            parent = ""
            for part in path.split("/")[1:-1]:
                parent += "/" + part
                if parent in created or any(_within(parent, b) for b in bound):
                    continue
                if any(_within(parent, s) for s in (*READ_ONLY_SYSTEM, "/proc", "/dev")):
                    raise ValueError(f"sandbox bind {path} lies inside a system directory")
                args += ["--perms", "0755", "--dir", parent]
                created.add(parent)
        args += [option, path, path]
        bound.append(path)
    args += ["--chdir", spec.workdir, "--clearenv"]
    for key, value in env.items():
        args += ["--setenv", key, value]
    args += ["--", *setpriv_args(setpriv, spec.uid, spec.gid), *argv]
    return args


# --- egress: a veth pair per sandbox, NAT in the node's namespace ---------------------------
EGRESS_TABLE = "hosting_sandbox"
VETH_PREFIX = launcher.VETH_PREFIX  # host side: hsb<slot>; the sandbox side is eth0


def egress_slot(pool: str, slot: int) -> tuple[str, str, int]:
    """The node-side and sandbox-side addresses of slot ``slot`` of ``pool`` (a /30 each)."""
    network = ipaddress.IPv4Network(pool)
    slots = network.num_addresses // 4
    if not 0 <= slot < slots:
        raise ValueError(f"egress slot {slot} is outside pool {pool} ({slots} slots)")
    node_side, sandbox_side = launcher.slot_addresses(int(network.network_address), slot)
    return node_side, sandbox_side, 30


def egress_table(node: str) -> str:
    """The nftables table of node ``node``'s egress rules: one per node, so that a node that
    stops removes its own rules and never those another node on the same host relies on.
    Characters nftables names do not take become ``_``, with a digest of the name appended."""
    safe = re.sub(r"[^A-Za-z0-9_]", "_", node)[:64]
    if safe != node:
        safe += "_" + hashlib.sha256(node.encode()).hexdigest()[:8]
    return f"{EGRESS_TABLE}_{safe}"


def egress_ruleset(pool: str, deny: tuple[str, ...] = (), table: str = EGRESS_TABLE) -> str:
    """nftables rules (one atomic transaction) for sandboxes' outbound traffic.

    Sandboxes reach nothing on the node host itself (no packet from a sandbox interface is
    delivered locally: not the loopback services, not any address of the host), not each
    other, nothing in ``deny``; other destinations are reached through masquerading. Nothing
    from outside may open a connection into a sandbox.

    The transaction replaces ``table`` whole (made empty first, then deleted, then written), so
    rules left by an earlier run that was killed are replaced, never added to. The rules match
    every sandbox interface of the host: with several nodes' tables, a packet is dropped if any
    of them drops it (the union of their ``deny`` lists applies).
    """
    network = ipaddress.IPv4Network(pool)
    for cidr in deny:
        ipaddress.ip_network(cidr)  # ValueError names a bad entry
    sandboxes = f'iifname "{VETH_PREFIX}*"'
    lines = [
        f"table inet {table}",
        f"delete table inet {table}",
        f"table inet {table} {{",
        "  chain input {",
        "    type filter hook input priority filter - 10; policy accept;",
        f"    {sandboxes} drop",
        "  }",
        "  chain forward {",
        "    type filter hook forward priority filter - 10; policy accept;",
        f'    {sandboxes} oifname "{VETH_PREFIX}*" drop',
    ]
    lines += [f"    {sandboxes} ip daddr {cidr} drop" for cidr in deny if ":" not in cidr]
    lines += [f"    {sandboxes} ip6 daddr {cidr} drop" for cidr in deny if ":" in cidr]
    lines += [
        f"    {sandboxes} meta nfproto ipv4 accept",
        f"    {sandboxes} drop",
        f'    oifname "{VETH_PREFIX}*" ct state established,related accept',
        f'    oifname "{VETH_PREFIX}*" drop',
        "  }",
        "  chain postrouting {",
        "    type nat hook postrouting priority srcnat; policy accept;",
        f'    ip saddr {network} oifname != "{VETH_PREFIX}*" masquerade',
        "  }",
        "}",
    ]
    return "\n".join(lines) + "\n"


def enable_egress(
    pool: str = DEFAULT_EGRESS_POOL,
    deny: tuple[str, ...] = (),
    *,
    nft: str | None = None,
    table: str = EGRESS_TABLE,
) -> bool:
    """Install the egress rules in the node's network namespace and turn on IPv4 forwarding.

    Run once when the node starts with egress on; ``disable_egress`` removes the rules when it
    stops. Returns whether ``table`` was there already (left by a run that was killed): it is
    replaced in the same transaction.
    """
    nft = nft or which("nft")
    if nft is None:
        raise SandboxError("egress needs nftables (nft not found; make sandbox-tools)")
    left = egress_installed(table, nft=nft)
    _run([nft, "-f", "-"], egress_ruleset(pool, deny, table))
    Path("/proc/sys/net/ipv4/ip_forward").write_text("1\n")
    return left


def egress_installed(table: str = EGRESS_TABLE, *, nft: str | None = None) -> bool:
    """Whether ``table`` exists in this network namespace."""
    nft = nft or which("nft")
    if nft is None:
        return False
    try:
        result = subprocess.run(
            [nft, "list", "table", "inet", table],
            capture_output=True, timeout=10, env={}, cwd="/",
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SandboxError(f"{nft} failed: {exc}") from None
    return result.returncode == 0


def disable_egress(*, nft: str | None = None, table: str = EGRESS_TABLE) -> None:
    """Remove ``table`` (nothing if it is not there). IPv4 forwarding is left on: it is the
    host's setting, which other things may rely on; without sandboxes it forwards nothing of
    theirs."""
    nft = nft or which("nft")
    if nft is not None:
        _run([nft, "-f", "-"], f"table inet {table}\ndelete table inet {table}\n")


def _run(argv: list[str], stdin: str = "", timeout: float = 10.0) -> None:
    try:
        result = subprocess.run(
            argv, input=stdin.encode(), capture_output=True, timeout=timeout, env={}, cwd="/"
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SandboxError(f"{argv[0]} failed: {exc}") from None
    if result.returncode != 0:
        detail = result.stderr.decode(errors="replace").strip()[-300:]
        raise SandboxError(f"{' '.join(argv[:3])} failed: {detail}")


# --- detection -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Isolation:
    """Whether this host can sandbox apps, and if not, why (one sentence for the operator)."""

    available: bool
    reason: str
    bwrap: str | None = None
    setpriv: str | None = None
    ip: str | None = None  # iproute2, nsenter and nft: egress; any missing: no egress
    nsenter: str | None = None
    nft: str | None = None

    @property
    def egress(self) -> bool:
        return None not in (self.ip, self.nsenter, self.nft)

    def summary(self) -> str:
        if not self.available:
            return f"app isolation unavailable: {self.reason}"
        egress = "egress possible" if self.egress else "no egress (iproute2 or nftables missing)"
        return f"app isolation: bubblewrap sandbox per app process, {egress}"


class IsolationUnavailable(RuntimeError):
    """The node cannot isolate apps and was not told that apps may share its user."""


SHARE_FLAG = "--apps-share-node-user"
SHARE_SETTING = "NODE_APPS_SHARE_NODE_USER"


def which(tool: str) -> str | None:
    return shutil.which(tool, path=TOOL_PATH)


def detect_isolation(*, probe: bool = True, timeout: float = 10.0) -> Isolation:
    """Can this host run apps in sandboxes? Checks root, the tools, and (``probe``) a real
    sandbox with pid, network, ipc and uts namespaces that switches to an unprivileged uid."""
    setpriv = which("setpriv")
    net = {"ip": which("ip"), "nsenter": which("nsenter"), "nft": which("nft")}
    bwrap = which("bwrap")
    if os.geteuid() != 0:
        return Isolation(False, f"the node does not run as root (uid {os.geteuid()})")
    if bwrap is None:
        return Isolation(False, "bubblewrap is not installed (bwrap not found; make sandbox-tools)")
    if setpriv is None:
        return Isolation(False, "setpriv (util-linux) is not installed")
    if probe:
        spec = SandboxSpec(uid=65534, gid=65534, home="/tmp", socket_dir="/tmp")
        args = bwrap_args(spec, ["/bin/true"], {}, layout=host_layout(), setpriv=setpriv)
        try:
            result = subprocess.run(
                [bwrap, *args], env={}, capture_output=True, timeout=timeout, cwd="/"
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return Isolation(False, f"bubblewrap could not run a sandbox: {exc}", bwrap, setpriv)
        if result.returncode != 0:
            detail = result.stderr.decode(errors="replace").strip()[-300:]
            return Isolation(
                False, f"bubblewrap could not create namespaces here: {detail}", bwrap, setpriv
            )
    return Isolation(True, "", bwrap, setpriv, **net)


def require_isolation(isolation: Isolation, *, apps_share_node_user: bool) -> str:
    """The start-up line when the node may start; ``IsolationUnavailable`` when it may not."""
    if isolation.available:
        return isolation.summary()
    if apps_share_node_user:
        return f"apps share the node's user ({SHARE_FLAG}): {isolation.reason}"
    raise IsolationUnavailable(
        f"refusing to start: apps cannot be isolated ({isolation.reason}); run the node as root "
        f"with bubblewrap installed, or pass {SHARE_FLAG} (setting {SHARE_SETTING}=1) to let "
        "every app run as the node's own user"
    )


# --- the node's side -----------------------------------------------------------------------
@dataclass(frozen=True)
class Launch:
    """What the node passes to ``create_subprocess_exec``: ``*argv``, ``env=env``,
    ``pass_fds=pass_fds``, ``cwd="/"``, ``start_new_session=True``."""

    argv: list[str]
    env: dict[str, str]
    pass_fds: tuple[int, ...] = field(default=())


def launch(
    spec: SandboxSpec,
    argv: list[str],
    env: dict[str, str],
    *,
    isolation: Isolation,
    python: str = sys.executable,
) -> Launch:
    """The launcher that runs ``argv`` with ``env`` inside ``spec``'s sandbox."""
    if not isolation.available or isolation.bwrap is None or isolation.setpriv is None:
        raise IsolationUnavailable(f"apps cannot be isolated: {isolation.reason}")
    if spec.egress and not isolation.egress:
        raise IsolationUnavailable("egress is on but iproute2, nsenter or nftables is missing")
    # bwrap's options are computed here, in the node: the launcher that runs them per start
    # then needs none of this module (decision 0111). Its info and block fds are its own.
    args = bwrap_args(spec, argv, env, layout=host_layout(), setpriv=isolation.setpriv)
    split = args.index("--")
    egress = None
    if spec.egress:
        network = ipaddress.IPv4Network(spec.egress_pool)
        slots = network.num_addresses // 4
        if slots == 0:
            raise ValueError(f"egress pool {spec.egress_pool} holds no /30")
        assert isolation.ip is not None and isolation.nsenter is not None  # isolation.egress
        egress = (isolation.ip, isolation.nsenter, int(network.network_address), slots)
    fields = launcher.config_fields(
        bwrap=isolation.bwrap,
        uid=spec.uid,
        gid=spec.gid,
        cgroups=spec.cgroups,
        keep_fds=spec.keep_fds,
        egress=egress,
        options=args[:split],
        command=args[split:],
    )
    bootstrap = (
        f"import sys; sys.path.insert(0, {str(CODE_ROOT)!r}); "
        "from webapps.node.launcher import main; main()"
    )
    return Launch(
        # -S: the launcher needs nothing of site-packages, and site's imports cost.
        argv=[python, "-I", "-S", "-c", bootstrap],
        env={CONFIG_ENV: launcher.encode(fields)},
        pass_fds=tuple(spec.keep_fds),
    )


def prepare_socket_dir(path: Path, uid: int, gid: int) -> Path:
    """An app's own socket directory: owned by its uid, mode 0700, so only the app and root
    (the node) can reach the socket in it. Made afresh: nothing of an earlier owner stays."""
    if path.is_symlink():
        path.unlink()
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    for child in path.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()
    os.chown(path, uid, gid, follow_symlinks=False)
    os.chmod(path, 0o700, follow_symlinks=False)
    return path
