"""Helpers for node tests: tiny WSGI apps in temporary homes, HTTP over unix sockets, and real
node processes (``manage.py runnode``) over a file SQLite database they share.

pytest-django's in-memory test database is invisible to other processes, so the node-process
tests make their own SQLite file (migrated once per run, copied per test) and point every child
process at it with ``DATABASE_URL``.
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
import tempfile
import textwrap
import uuid
from pathlib import Path

from routing import ALGORITHM, Backend, RouteTable
from tests.support import child_env, free_port, port_open, repo_root, run_python, wait_until
from webapps.node.control import call


def write_app(
    home_root: Path, owner: str, domain: str, body: str, entry_file: str = "wsgi.py"
) -> Path:
    """Write ``body`` (Python source defining ``application``) as an app's code; return its dir."""
    source = home_root / owner.lower() / domain
    source.mkdir(parents=True, exist_ok=True)
    (source / entry_file).write_text(textwrap.dedent(body))
    return source


def answer_app(text: str) -> str:
    """Source of an app that answers ``text`` on every request."""
    return f"""
        def application(environ, start_response):
            body = {text!r}.encode()
            start_response("200 OK", [("Content-Type", "text/plain"),
                                      ("Content-Length", str(len(body)))])
            return [body]
    """


def every_worker_ready(app_status, workers: int = 2) -> None:
    """Wait until every worker of an app's process has imported it: a start answers from its
    first worker, and one still importing when the code is changed loads the change (broken
    code stops gunicorn before any reload). ``app_status()``: the app's ``status`` entry."""

    def ready():
        app = app_status()
        return app is not None and app["workers_ready"] >= workers

    wait_until(ready, what="every worker of the app")


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float = 10.0) -> None:
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.unix_path)


def get_unix(path: str, target: str = "/", host: str = "app.test", timeout: float = 10.0):
    """GET over a unix socket; returns (status, body text)."""
    status, _, body = get_unix_response(path, target, host, timeout)
    return status, body


def get_unix_response(
    path: str, target: str = "/", host: str = "app.test", timeout: float = 10.0
) -> tuple[int, dict[str, str], str]:
    """GET over a unix socket; returns (status, headers, body text)."""
    conn = UnixHTTPConnection(path, timeout)
    try:
        conn.request("GET", target, headers={"Host": host})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read().decode()
    finally:
        conn.close()


# Real node processes

# The platform's package set (PLATFORM_PACKAGES), shared by the nodes of one host: one for every
# test's nodes, made by the first (sets are named by the versions in them, so it never goes stale).
PLATFORM_PACKAGES_DIR = Path(tempfile.gettempdir()) / f"hosting-test-packages-{os.getuid()}"

MANAGE = str(repo_root() / "manage.py")


def manage(env: dict[str, str], *args: str, timeout: float = 120) -> str:
    return run_python(env, MANAGE, *args, timeout=timeout)


def platform_env(workdir: Path, database: Path, **extra: str) -> dict[str, str]:
    return child_env(
        DATABASE_URL=f"sqlite:///{database}",
        DATABASE_TEST_NAME="",
        VAR_DIR=str(workdir / "var"),
        HOME_ROOT=str(workdir / "home"),
        PANEL_HOST="panel.localhost",
        REDIS_PREFIX=f"test-{uuid.uuid4().hex[:8]}:",
        DJANGO_SETTINGS_MODULE="panel.settings",
        LOG_LEVEL="WARNING",
        PLATFORM_PACKAGES_DIR=str(PLATFORM_PACKAGES_DIR),
        **extra,
    )


def migrated_template(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    database = directory / "template.sqlite3"
    manage(platform_env(directory, database), "migrate", "-v0")
    return database


SETUP = """
import json
from panel.accounts import actions
from panel.accounts.models import User, Via
from panel.accounts.origin import Origin
from webapps.models import WebApp
spec = json.loads({spec!r})
tokens = {{}}
for owner, apps in spec.items():
    user = User.objects.create_user(owner, password=None)  # no hashing: tokens only
    for domain, source in apps:
        WebApp.objects.create(owner=user, domain=domain, source_directory=source)
    _, tokens[owner] = actions.do_create_token(
        user, actor=user, origin=Origin(via=Via.CLI), name="tests"
    )
uids = {{owner: User.objects.get(username=owner).uid for owner in spec}}
print(json.dumps({{"tokens": tokens, "uids": uids}}))
"""


def add_apps(env: dict[str, str], apps: dict[str, list[tuple[str, str]]]) -> dict[str, str]:
    """Create users and their apps ``{owner: [(domain, source_dir)]}``; return API tokens.

    Each owner's home (written by the test) is then given to the uid the panel allocated, as
    the panel does for the homes it makes.
    """
    out = manage(env, "shell", "-c", SETUP.format(spec=json.dumps(apps)))
    made = json.loads(out.strip().splitlines()[-1])
    for owner, uid in made["uids"].items():
        give_home(Path(env["HOME_ROOT"]) / owner.lower(), uid)
    return made["tokens"]


def give_home(home: Path, uid: int) -> None:
    """Make ``home`` and everything in it belong to ``uid`` (as root; no-op otherwise)."""
    if os.geteuid() != 0 or not home.exists():
        return
    for directory, dirs, files in os.walk(home):
        os.lchown(directory, uid, uid)
        for name in dirs + files:
            os.lchown(os.path.join(directory, name), uid, uid)


class NodeProcess:
    def __init__(self, name: str, env: dict[str, str], workdir: Path, *args: str) -> None:
        self.name = name
        self.env = env
        self.port = free_port()
        self.run_dir = workdir / f"r-{name}"
        self.log_dir = workdir / f"l-{name}"
        self.args = args
        self.output = workdir / f"{name}.out"
        self.process: subprocess.Popen | None = None
        self.app_pids: set[int] = set()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def control_socket(self) -> Path:
        return self.run_dir / "control.sock"

    def start(self, timeout: float = 30) -> NodeProcess:
        with open(self.output, "ab") as out:
            self.process = subprocess.Popen(
                [
                    sys.executable, MANAGE, "runnode",
                    "--name", self.name,
                    "--listen", self.address,
                    "--run-dir", str(self.run_dir),
                    "--log-dir", str(self.log_dir),
                    *self.args,
                ],
                env=self.env,
                cwd=repo_root(),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        wait_until(
            lambda: (
                self._check_alive()
                and port_open("127.0.0.1", self.port)
                and self.control_socket.exists()
            ),
            timeout,
            what=f"node {self.name}",
        )
        return self

    def _check_alive(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"node {self.name} exited:\n{self.output.read_text()[-3000:]}")
        return True

    def status(self) -> list[dict]:
        apps = call(self.control_socket, {"op": "status"}, timeout=10)["apps"]
        self.app_pids.update(a["pid"] for a in apps if a["pid"])
        return apps

    def app(self, name: str) -> dict | None:
        return next((a for a in self.status() if a["name"] == name), None)

    def request(
        self, host: str, path: str = "/", method: str = "GET", headers=None, body=None,
        timeout: float = 30,
    ) -> tuple[int, dict[str, str], str]:  # fmt: skip
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers={"Host": host, **(headers or {})})
            response = conn.getresponse()
            return response.status, dict(response.getheaders()), response.read().decode()
        finally:
            conn.close()

    def stop(self, timeout: float = 30) -> int | None:
        if self.process is None:
            return None
        with contextlib.suppress(OSError, KeyError, RuntimeError):
            if self.process.poll() is None:
                self.status()  # remember app pids, to make sure of them afterwards
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        code = self.process.returncode
        self.process = None
        return code

    def kill_leftovers(self) -> list[int]:
        """Kill app process groups still running (a failing test); return their members."""
        with contextlib.suppress(TimeoutError):
            # SIGKILLed processes need a moment to be gone; exited ones (zombies) do not count
            wait_until(lambda: not any(group_members(p) for p in self.app_pids), timeout=5)
        left = [m for pid in self.app_pids for m in group_members(pid)]
        for pid in self.app_pids:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        return left


def group_members(pgid: int) -> list[int]:
    """Processes of a process group that still run (zombies, already exited, excluded)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        state, pgrp = fields[0], int(fields[2])
        if pgrp == pgid and state not in ("Z", "X"):
            members.append(int(stat.parent.name))
    return members


def copy_db(template: Path, workdir: Path) -> Path:
    database = workdir / "db.sqlite3"
    shutil.copy(template, database)
    return database


def table_of(**addresses: str) -> RouteTable:
    backends = tuple(Backend(name, address) for name, address in addresses.items())
    return RouteTable(version=1, algorithm=ALGORITHM, backends=backends)


def domain_served_by(table: RouteTable, name: str) -> str:
    return next(
        d for d in (f"app{i}.apps.test" for i in range(1000)) if table.backend_for(d).name == name
    )


def node_with(short_tmp, home_root, loop_thread, apps: dict, **options):
    """A ``NodeServer`` in ``loop_thread`` serving ``apps`` (name -> AppSpec) from a static
    lookup, on a free port: ``(config, server)``; ``options`` are NodeConfig's."""
    from webapps.node.server import NodeConfig, NodeServer

    config = NodeConfig(
        name="n1",
        host="127.0.0.1",
        port=free_port(),
        run_dir=short_tmp / "run",
        log_dir=short_tmp / "logs",
        home_root=home_root,
        panel_host="panel.test",
        base_dir=Path.cwd(),
        idle_timeout=options.pop("idle_timeout", None),
        start_timeout=options.pop("start_timeout", 20.0),
        stop_timeout=options.pop("stop_timeout", 5.0),
        **options,
    )

    async def start():
        server = NodeServer(config, lookup=apps.get)
        await server.start()
        return server

    return config, loop_thread.run(start())
