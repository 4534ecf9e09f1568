"""The sandbox launcher: the small root process between the node and bwrap (decision 0111).

The node starts it once per app process (``sandbox.launch`` gives its argv and environment).
It starts bwrap with the options the node computed, puts the sandbox in its owner's cgroups,
gives it its veth pair when egress is on, lets the app's command run, forwards the signals it
gets (HUP, TERM, ...) to the app's pid 1, and exits as the app exited.

It runs on every cold start, so it is kept cheap: this module imports only modules the
interpreter has loaded at start-up anyway (``os``, ``sys``, ``stat``) and three built-in ones
(``_signal``, ``select``, ``time``); no ``json``, ``subprocess``, ``dataclasses``, ``re`` or
``enum``, which together cost more than the rest of the launcher. Children are started with
``os.posix_spawn``. The configuration travels in one environment variable, removed before
anything else runs, in a length-prefixed encoding (``encode``/``decode``) that needs no parser.

Rule 2 of ``webapps.node.sandbox`` holds here: the launcher, bwrap, ip and nsenter run with an
empty environment; the app's environment is in bwrap's options, which reach it through a pipe.
"""

import _signal
import os
import select
import stat
import sys
import time

# The environment variable that carries the launcher's configuration.
CONFIG_ENV = "HOSTING_SANDBOX_CONFIG"
LAUNCH_FAILED = 125
START_TIMEOUT = 10.0  # bwrap reporting its child; the sandbox starting its command
TOOL_TIMEOUT = 10.0  # one ip / nsenter run
VETH_PREFIX = "hsb"  # host-side interface names: hsb<slot>; the sandbox side is eth0
CLAIM_TRIES = 64
# Signals passed on to the app's pid 1 (gunicorn's control signals): HUP, INT, QUIT, USR1,
# USR2, TERM, WINCH, TTIN, TTOU.
FORWARDED = (
    _signal.SIGHUP,
    _signal.SIGTERM,
    _signal.SIGINT,
    _signal.SIGQUIT,
    _signal.SIGUSR1,
    _signal.SIGUSR2,
    _signal.SIGTTIN,
    _signal.SIGTTOU,
    _signal.SIGWINCH,
)
# Ignored by Python, and an ignored signal stays ignored across exec: set back to default in
# every child, as subprocess does.
RESTORED = (*FORWARDED, _signal.SIGPIPE, _signal.SIGXFSZ)
_INFO_MAX = 4096  # bwrap's info JSON is a few dozen bytes
_ERR_MAX = 64 * 1024  # what is kept of a tool's stderr


class LaunchError(RuntimeError):
    """The sandbox could not be set up (the launcher exits with ``LAUNCH_FAILED``)."""


# --- the configuration -----------------------------------------------------------------------
def encode(fields: list[str]) -> str:
    """``fields`` as one environment value: ``<length>:<text>`` for each, concatenated."""
    out = []
    for text in fields:
        if "\0" in text:
            raise ValueError(f"a launcher field contains a NUL character: {text[:40]!r}")
        out.append(f"{len(text)}:{text}")
    return "".join(out)


def decode(raw: str) -> list[str]:
    """The fields ``encode`` wrote; ``ValueError`` when ``raw`` is not such a value."""
    fields, at = [], 0
    while at < len(raw):
        colon = raw.find(":", at)
        if colon < 0 or not raw[at:colon].isdigit():
            raise ValueError(f"launcher configuration is malformed at offset {at}")
        end = colon + 1 + int(raw[at:colon])
        if end > len(raw):
            raise ValueError("launcher configuration is truncated")
        fields.append(raw[colon + 1 : end])
        at = end
    return fields


def config_fields(
    *,
    bwrap: str,
    uid: int,
    gid: int,
    cgroups: tuple[str, ...],
    keep_fds: tuple[int, ...],
    egress: tuple[str, str, int, int] | None,
    options: list[str],
    command: list[str],
) -> list[str]:
    """The launcher's configuration as fields. ``egress``: (ip, nsenter, the pool's first
    address as an integer, its number of /30 slots), or None; ``options``: bwrap's options,
    sent to it through a pipe; ``command``: what follows them on bwrap's command line."""
    ip, nsenter, base, slots = egress or ("", "", 0, 0)
    return [
        bwrap, str(uid), str(gid), ip, nsenter, str(base), str(slots),
        str(len(cgroups)), *cgroups,
        str(len(keep_fds)), *map(str, keep_fds),
        str(len(options)), *options,
        *command,
    ]  # fmt: skip


def parse_fields(fields: list[str]) -> dict:
    it = iter(fields)
    config = {
        "bwrap": next(it),
        "uid": int(next(it)),
        "gid": int(next(it)),
        "ip": next(it),
        "nsenter": next(it),
        "base": int(next(it)),
        "slots": int(next(it)),
    }
    config["cgroups"] = [next(it) for _ in range(int(next(it)))]
    config["keep_fds"] = [int(next(it)) for _ in range(int(next(it)))]
    config["options"] = [next(it) for _ in range(int(next(it)))]
    config["command"] = list(it)
    return config


def slot_addresses(base: int, slot: int) -> tuple[str, str]:
    """The node-side and sandbox-side addresses of /30 ``slot`` of a pool starting at ``base``."""
    first = base + 4 * slot
    return _dotted(first + 1), _dotted(first + 2)


def _dotted(address: int) -> str:
    return ".".join(str((address >> shift) & 0xFF) for shift in (24, 16, 8, 0))


# --- the launcher ----------------------------------------------------------------------------
def main() -> None:
    raw = os.environ.pop(CONFIG_ENV, None)
    os.environ.clear()
    if raw is None:
        sys.stderr.write(f"sandbox launcher: {CONFIG_ENV} is not set\n")
        sys.exit(LAUNCH_FAILED)
    try:
        config = parse_fields(decode(raw))
        code = run(config)
    except (LaunchError, ValueError, StopIteration) as exc:
        sys.stderr.write(f"sandbox: {exc or 'launcher configuration is truncated'}\n")
        sys.stderr.flush()
        os._exit(LAUNCH_FAILED)
    _exit_like(code)


def run(config: dict) -> int:
    """Run the sandbox and return bwrap's exit status (128 + n: the app was killed by n)."""
    os.umask(0o077)
    os.chdir("/")
    keep = sorted(set(config["keep_fds"]))
    _close_all_but(keep)
    for fd in keep:
        # A pipe is reopened through /dev/fd/N (gunicorn's log files): it must be the owner's.
        try:
            if stat.S_ISFIFO(os.fstat(fd).st_mode):
                os.fchown(fd, config["uid"], config["gid"])
        except OSError:
            pass
    pending: list[int] = []
    child = [0]

    def forward(signum, _frame):
        if child[0]:
            try:
                os.kill(child[0], signum)
            except ProcessLookupError:
                pass
        else:
            pending.append(signum)

    for sig in FORWARDED:
        _signal.signal(sig, forward)
    info_r, info_w = os.pipe()
    block_r, block_w = os.pipe()
    args_r, args_w = os.pipe()
    options = ["--info-fd", str(info_w), "--block-fd", str(block_r), *config["options"]]
    bwrap = config["bwrap"]
    pid = 0
    try:
        for fd in (*keep, info_w, block_r, args_r):
            os.set_inheritable(fd, True)
        pid = os.posix_spawn(
            bwrap,
            [bwrap, "--args", str(args_r), *config["command"]],
            {},
            file_actions=[(os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0)],
            setsigdef=RESTORED,
        )
        for fd in (info_w, block_r, args_r):
            os.close(fd)
        info_w = block_r = args_r = -1
        payload = b"".join(os.fsencode(a) + b"\0" for a in options)
        try:
            _write_all(args_w, payload)
        except OSError as exc:
            raise LaunchError(f"bubblewrap did not take its options: {exc}") from None
        os.close(args_w)
        args_w = -1
        init = _read_child_pid(info_r, pid, START_TIMEOUT)
        for directory in config["cgroups"]:
            try:
                fd = os.open(f"{directory}/cgroup.procs", os.O_WRONLY)
                try:
                    os.write(fd, b"%d\n" % init)
                finally:
                    os.close(fd)
            except OSError as exc:
                raise LaunchError(f"could not join cgroup {directory}: {exc}") from None
        if config["slots"]:
            attach_egress(init, config["base"], config["slots"], config["ip"], config["nsenter"])
        os.write(block_w, b"go")
        child[0] = _app_pid(init, pid, START_TIMEOUT)
        for signum in pending:
            try:
                os.kill(child[0], signum)
            except ProcessLookupError:
                pass
        _, status = os.waitpid(pid, 0)  # PEP 475: retried after the handler ran
        pid = 0
        return os.waitstatus_to_exitcode(status)
    except BaseException:
        if pid:
            _kill_and_reap(pid)
        raise
    finally:
        for fd in (info_r, info_w, block_r, block_w, args_r, args_w):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass


def _close_all_but(keep: list[int]) -> None:
    """Close every descriptor from 3 up but ``keep``: bwrap (and so the app) gets no other."""
    low = 3
    for fd in keep:
        if fd > low:
            os.closerange(low, fd)
        low = max(low, fd + 1)
    os.closerange(low, os.sysconf("SC_OPEN_MAX"))


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _exited(pid: int) -> int | None:
    """bwrap's exit code once it has ended (it is reaped), else None."""
    done, status = os.waitpid(pid, os.WNOHANG)
    return os.waitstatus_to_exitcode(status) if done else None


def child_pid_of(info: bytes) -> int | None:
    """The ``child-pid`` of bwrap's info JSON (``{"child-pid": 123}``), None until it is all
    there: the digits must be followed by something else."""
    key = info.find(b'"child-pid"')
    if key < 0:
        return None
    rest = info[key + len(b'"child-pid"') :].lstrip(b" \t\r\n")
    if not rest.startswith(b":"):
        return None
    rest = rest[1:].lstrip(b" \t\r\n")
    digits = len(rest) - len(rest.lstrip(b"0123456789"))
    if digits == 0 or digits == len(rest):
        return None
    return int(rest[:digits])


def _read_child_pid(fd: int, pid: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    data = b""
    while len(data) < _INFO_MAX:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise LaunchError(f"bubblewrap did not start the sandbox within {timeout:g} s")
        ready, _, _ = select.select([fd], [], [], min(remaining, 0.5))
        if not ready:
            code = _exited(pid)
            if code is not None:
                raise LaunchError(f"bubblewrap exited with status {code}")
            continue
        chunk = os.read(fd, _INFO_MAX)
        if not chunk:
            break
        data += chunk
        found = child_pid_of(data)
        if found is not None:
            return found
    code = _exited(pid)
    if code is not None:
        raise LaunchError(f"bubblewrap exited with status {code}")
    raise LaunchError(f"bubblewrap's info was not understood: {data[:200]!r}")


def _app_pid(init: int, pid: int, timeout: float) -> int:
    """The host pid of the app's command: the only child of the sandbox's pid 1."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with open(f"/proc/{init}/task/{init}/children", "rb") as stream:
                children = stream.read().split()
        except OSError:
            children = []
        if children:
            return int(children[0])
        if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
            return init  # it already ended (not reaped: waitpid gets its status); nobody to signal
        if time.monotonic() > deadline:
            raise LaunchError(f"the sandbox did not start its command within {timeout:g} s")
        time.sleep(0.002)


# --- egress ----------------------------------------------------------------------------------
def attach_egress(pid: int, base: int, slots: int, ip: str, nsenter: str) -> str:
    """Give the network namespace of ``pid`` an interface to the node, on a free /30 slot.

    A slot is claimed by creating its host-side interface (the kernel refuses a second one of
    that name): one ``ip -batch`` creates the pair, with its sandbox end already in the
    sandbox's namespace, and configures the host end; one more, in the sandbox's namespace,
    configures the sandbox end. The pair disappears with the namespace, so nothing outlives it.
    Returns the host-side interface name.
    """
    start = int.from_bytes(os.urandom(4), "big") % slots
    for attempt in range(min(CLAIM_TRIES, slots)):
        slot = (start + attempt) % slots
        name = f"{VETH_PREFIX}{slot}"
        node_side, sandbox_side = slot_addresses(base, slot)
        code, err = spawn_tool(
            [ip, "-batch", "-"],
            f"link add {name} type veth peer name eth0 netns {pid}\n"
            f"addr add {node_side}/30 dev {name}\nlink set {name} up\n",
        )
        if code != 0:
            # ip -batch stops at the first failing line and names it: line 1 failing because
            # the name exists means another sandbox holds the slot.
            if b"exists" in err and b"-:1" in err:
                continue
            detail = err.decode(errors="replace").strip()[-300:]
            raise LaunchError(f"could not create the sandbox's interface: {detail}")
        code, err = spawn_tool(
            [nsenter, f"--net=/proc/{pid}/ns/net", ip, "-batch", "-"],
            f"addr add {sandbox_side}/30 dev eth0\nlink set eth0 up\n"
            f"route add default via {node_side}\n",
        )
        if code != 0:
            detail = err.decode(errors="replace").strip()[-300:]
            raise LaunchError(f"could not configure the sandbox's interface: {detail}")
        return name
    raise LaunchError(f"no free egress slot after {CLAIM_TRIES} tries")


def spawn_tool(argv: list[str], stdin: str, timeout: float = TOOL_TIMEOUT) -> tuple[int, bytes]:
    """Run ``argv`` (empty environment, cwd /) with ``stdin`` as its input; its exit code and
    the end of its stderr. Killed after ``timeout``."""
    in_r, in_w = os.pipe()
    err_r, err_w = os.pipe()
    try:
        pid = os.posix_spawn(
            argv[0],
            argv,
            {},
            file_actions=[
                (os.POSIX_SPAWN_DUP2, in_r, 0),
                (os.POSIX_SPAWN_OPEN, 1, "/dev/null", os.O_WRONLY, 0),
                (os.POSIX_SPAWN_DUP2, err_w, 2),
            ],
            setsigdef=RESTORED,
        )
    except OSError as exc:
        for fd in (in_r, in_w, err_r, err_w):
            os.close(fd)
        raise LaunchError(f"{argv[0]} failed: {exc}") from None
    os.close(in_r)
    os.close(err_w)
    err = b""
    try:
        try:
            _write_all(in_w, stdin.encode())  # a few lines: within the pipe's buffer
        except BrokenPipeError:
            pass
        os.close(in_w)
        in_w = -1
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                _kill_and_reap(pid)
                pid = 0
                raise LaunchError(f"{argv[0]} did not finish within {timeout:g} s")
            ready, _, _ = select.select([err_r], [], [], remaining)
            if ready:
                chunk = os.read(err_r, 4096)
                if not chunk:
                    break
                err = (err + chunk)[-_ERR_MAX:]
        _, status = os.waitpid(pid, 0)
        pid = 0
        return os.waitstatus_to_exitcode(status), err
    finally:
        os.close(err_r)
        if in_w >= 0:
            os.close(in_w)
        if pid:
            _kill_and_reap(pid)


def _kill_and_reap(pid: int) -> None:
    """Kill our child ``pid`` and collect it (it may have been collected already)."""
    try:
        os.kill(pid, _signal.SIGKILL)
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def _exit_like(code: int) -> None:
    """Exit as the sandboxed command did: by the same signal when bwrap reports 128 + n."""
    sys.stdout.flush()
    sys.stderr.flush()
    if 128 < code < 128 + _signal.NSIG:
        sig = code - 128
        try:
            _signal.signal(sig, _signal.SIG_DFL)
        except (OSError, ValueError):
            pass  # SIGKILL and SIGSTOP cannot be caught: they are at their default
        os.kill(os.getpid(), sig)
    os._exit(code if 0 <= code <= 255 else LAUNCH_FAILED)
