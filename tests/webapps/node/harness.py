"""Running tenants' apps under gunicorn inside real sandboxes, as the node will.

``need_isolation()`` skips a test naming what is missing (not root, no bubblewrap...); in CI,
as root, ``make test-sqlite`` installs the tools first, so nothing skips there.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support import wait_until
from webapps.node import sandbox
from webapps.node.spec import GUNICORN_CONF, AppSpec, gunicorn_argv

HERE = Path(__file__).resolve().parent


def need_isolation(*, egress: bool = False) -> sandbox.Isolation:
    isolation = sandbox.detect_isolation()
    if not isolation.available:
        pytest.skip(f"cannot sandbox here: {isolation.reason}")
    if egress and not isolation.egress:
        pytest.skip("egress needs iproute2, nsenter and nftables (make sandbox-tools)")
    return isolation


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float = 10.0) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


def get(sock: Path, path: str = "/", timeout: float = 10.0) -> tuple[int, bytes]:
    conn = UnixHTTPConnection(str(sock), timeout)
    try:
        conn.request("GET", path, headers={"Host": "app.example"})
        response = conn.getresponse()
        return response.status, response.read(1024 * 1024)
    finally:
        conn.close()


@dataclass
class Tenant:
    """An owner with a home (their app's code in it) and a socket directory under the run dir."""

    name: str
    uid: int
    home: Path
    socket_dir: Path
    process: subprocess.Popen | None = None
    fds: list[int] = field(default_factory=list)

    @property
    def log(self) -> Path:
        return self.socket_dir.parent.parent / f"{self.name}.log"

    @property
    def socket(self) -> Path:
        return self.socket_dir / "app.sock"

    def write(self, relative: str, text: str) -> Path:
        path = self.home / relative
        path.write_text(text)
        os.chown(path, self.uid, self.uid)
        return path


def make_tenant(root: Path, name: str, uid: int, app_file: str) -> Tenant:
    home = root / "var" / "home" / name
    home.mkdir(parents=True)
    os.chown(home, uid, uid)
    home.chmod(0o700)
    socket_dir = sandbox.prepare_socket_dir(root / "var" / "run" / "b1" / "apps" / name, uid, uid)
    tenant = Tenant(name, uid, home, socket_dir)
    tenant.write("wsgi.py", (HERE / app_file).read_text())
    return tenant


def start(
    tenant: Tenant,
    isolation: sandbox.Isolation,
    *,
    cgroups: tuple[str, ...] = (),
    workers: int = 1,
    prefix: tuple[str, ...] = (),
    egress: bool = False,
) -> subprocess.Popen:
    """gunicorn for the tenant's app inside its sandbox, as the supervisor starts it."""
    r_acc, w_acc = os.pipe()
    spec = AppSpec(
        name=f"{tenant.name}.example",
        source_directory=str(tenant.home),
        owner=tenant.name,
        workers=workers,
    )
    argv = gunicorn_argv(
        spec, socket=tenant.socket, access_fd=w_acc, timeout=30, graceful_timeout=5
    )
    argv[-1:-1] = ["--umask", "0o077"]
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(tenant.home),
        "USER": tenant.name,
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
    }
    box = sandbox.SandboxSpec(
        uid=tenant.uid,
        gid=tenant.uid,
        home=str(tenant.home),
        socket_dir=str(tenant.socket_dir),
        read_only=(str(GUNICORN_CONF), *sandbox.python_paths(sys.executable)),
        cgroups=cgroups,
        keep_fds=(w_acc,),
        egress=egress,
    )
    launch = sandbox.launch(box, argv, env, isolation=isolation)
    log = tenant.log.open("ab")
    tenant.process = subprocess.Popen(
        [*prefix, *launch.argv],
        env=launch.env,
        cwd="/",
        pass_fds=launch.pass_fds,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    log.close()
    os.close(w_acc)
    os.set_blocking(r_acc, False)
    tenant.fds.append(r_acc)

    def ready():
        if tenant.process.poll() is not None:
            raise AssertionError(f"the sandbox exited: {tenant.log.read_text()[-3000:]}")
        return get(tenant.socket, "/ping", 2)[0] == 200

    wait_until(ready, 30, what=f"{tenant.name}'s app")
    return tenant.process


def stop(tenant: Tenant, timeout: float = 10.0) -> None:
    process = tenant.process
    if process is not None and process.poll() is None:
        process.terminate()  # the launcher passes it to gunicorn: a graceful stop
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout)
    for fd in tenant.fds:
        with contextlib.suppress(OSError):
            os.close(fd)
    tenant.fds.clear()


def sandbox_pids(process: subprocess.Popen) -> list[int]:
    """Host pids of the sandboxed processes under a launcher (bwrap's descendants)."""
    found: list[int] = []
    todo = [process.pid]
    while todo:
        pid = todo.pop()
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            continue
        for child in map(int, children):
            found.append(child)
            todo.append(child)
    return found


def uid_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise ValueError(pid)


def gunicorn_pids(process: subprocess.Popen) -> list[int]:
    return [
        pid
        for pid in sandbox_pids(process)
        if b"gunicorn" in Path(f"/proc/{pid}/cmdline").read_bytes()
        and Path(f"/proc/{pid}/comm").read_text().strip() != "bwrap"
    ]


def run_in_sandbox(
    isolation: sandbox.Isolation,
    code: str,
    home: Path,
    uid: int,
    *,
    egress: bool,
    prefix: tuple[str, ...] = (),
    timeout: float = 60.0,
) -> dict:
    """Run a Python snippet in a sandbox; it prints one JSON object, which is returned."""
    box = sandbox.SandboxSpec(
        uid=uid,
        gid=uid,
        home=str(home),
        socket_dir=str(home),
        read_only=sandbox.python_paths(sys.executable),
        egress=egress,
    )
    launch = sandbox.launch(
        box, [sys.executable, "-c", code], {"PATH": "/usr/bin:/bin"}, isolation=isolation
    )
    result = subprocess.run(
        [*prefix, *launch.argv],
        env=launch.env,
        cwd="/",
        capture_output=True,
        timeout=timeout,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"sandboxed snippet failed ({result.returncode}): {result.stderr.decode()}"
        )
    return json.loads(result.stdout)


def rmtree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
