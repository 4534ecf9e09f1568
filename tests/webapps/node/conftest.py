from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import tempfile
from pathlib import Path

import pytest

from routing import RouteTable
from tests.support import LoopThread, free_port
from webapps.node.control import ControlServer
from webapps.node.directory import AppDirectory
from webapps.node.node import Node
from webapps.node.spec import AppSpec
from webapps.node.supervisor import Supervisor


@pytest.fixture
def short_tmp():
    """A short temporary directory: unix socket paths must stay under 108 bytes."""
    path = Path(tempfile.mkdtemp(prefix="nd-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def home_root(short_tmp):
    root = short_tmp / "home"
    root.mkdir()
    return root


@pytest.fixture
def loop_thread():
    lt = LoopThread(timeout=60.0)
    yield lt
    lt.stop()


@pytest.fixture
def supervisor_factory(short_tmp, home_root, loop_thread):
    made: list[Supervisor] = []

    def make(**options) -> Supervisor:
        options.setdefault("idle_timeout", None)
        options.setdefault("start_timeout", 20.0)
        options.setdefault("reload_timeout", 20.0)
        options.setdefault("stop_timeout", 5.0)

        async def build() -> Supervisor:
            return Supervisor(
                run_dir=short_tmp / "run",
                log_dir=short_tmp / "logs",
                home_root=home_root,
                **options,
            )

        sup = loop_thread.run(build())
        made.append(sup)
        return sup

    yield make
    for sup in made:
        pids = [a["pid"] for a in sup.status() if a["pid"]]
        loop_thread.run(sup.stop_all(), timeout=30)
        for pid in pids:  # belt and braces: no process group may outlive a test
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)


@pytest.fixture
def node_control(supervisor_factory, short_tmp, loop_thread):
    """A node core named b7 whose database is a dict (the outermost edge), and its socket.

    Its route table is ``tables[0]`` (none at first), set by the test.
    """
    sup = supervisor_factory()
    specs: dict[str, AppSpec] = {}
    path = short_tmp / "control.sock"
    tables: list[RouteTable | None] = [None]

    async def build():
        directory = AppDirectory(system={}, lookup=specs.get, cache_seconds=0)
        node = Node(name="b7", supervisor=sup, directory=directory, routes=lambda: tables[0])
        server = ControlServer(path, node.dispatch)
        await server.start()
        return server

    server = loop_thread.run(build())
    yield sup, specs, path, tables
    loop_thread.run(server.close())


@pytest.fixture
def free_tcp_address():
    """An address where nothing listens: a node that is down."""
    return f"127.0.0.1:{free_port()}"


@pytest.fixture
def peer():
    """A listening TCP socket standing in for another node that is up."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        yield f"127.0.0.1:{server.getsockname()[1]}"


@pytest.fixture(scope="session")
def template_db(tmp_path_factory):
    from tests.webapps.node.support import migrated_template

    return migrated_template(tmp_path_factory.mktemp("node-db"))


@contextlib.contextmanager
def platform_in(workdir: Path, template: Path):
    """A database copy, an environment for node processes, and a way to start nodes.

    On exit every node is stopped with SIGTERM and no app process of theirs may be left.
    """
    from tests.webapps.node.support import NodeProcess, copy_db, platform_env

    database = copy_db(template, workdir)
    env = platform_env(workdir, database)
    (workdir / "home").mkdir(exist_ok=True)
    nodes: list[NodeProcess] = []

    class Platform:
        home = workdir / "home"

        def __init__(self) -> None:
            self.env = env
            self.workdir = workdir

        def node(self, name: str, *args: str) -> NodeProcess:
            node = NodeProcess(name, self.env, workdir, *args)
            nodes.append(node)
            return node.start()

    try:
        yield Platform()
    finally:
        left, notes = [], []
        for node in nodes:
            node.stop()
            pids = node.kill_leftovers()
            if pids:
                notes += [
                    f"{p.name}:\n{p.read_text()[-1500:]}" for p in node.log_dir.glob("*.server.log")
                ]
                notes.append(node.output.read_text()[-3000:])
            left += pids
    assert left == [], f"app processes outlived their node: {left}\n" + "\n".join(notes)


@pytest.fixture
def platform(short_tmp, template_db):
    with platform_in(short_tmp, template_db) as value:
        yield value


@pytest.fixture(scope="module")
def module_platform(template_db):
    """Like ``platform``, shared by the tests of one module (their apps must not clash)."""
    workdir = Path(tempfile.mkdtemp(prefix="nd-", dir="/tmp"))
    try:
        with platform_in(workdir, template_db) as value:
            yield value
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
