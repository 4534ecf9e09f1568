"""`make demo` as someone trying the platform runs it: a fresh ``VAR_DIR``, every process of the
demo started by ``scripts.demo``, a seeded app served through the proxy (and over HTTPS with a
certificate from the local ACME server when pebble is installed), and one signal to the demo
stops everything it started, the apps' sandboxed processes included; with one Redis and with
``DEMO_REDIS=sentinel``, whose master and replica hold the same users."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import random
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import redis as redis_py

from scripts.platform import REPO_ROOT
from scripts.redis_users import ROLES
from tests.support import wait_until

pytestmark = pytest.mark.e2e

APP = "ironhand.apps.localhost"  # seed_demo's app for IronHand


def _free_run(count: int) -> int:
    """The first of ``count`` consecutive TCP ports that were all free a moment ago, below the
    kernel's ephemeral range: the demo's processes open many outgoing connections (Redis, the
    proxy to the nodes, pebble), and any of them may take a port of that range before the
    process meant to listen on it has bound it."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for _ in range(50):
        first = random.randrange(10000, low - count)
        with contextlib.ExitStack() as held:
            try:
                for port in range(first, first + count):
                    sock = held.enter_context(socket.socket())
                    sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return first
    raise RuntimeError(f"no {count} consecutive free ports below {low}")


def _get(port: int, host: str) -> tuple[int, str]:
    # A first request cold-starts the app on its node: Django in a sandbox takes some seconds.
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("GET", "/", headers={"Host": host})
        response = conn.getresponse()
        return response.status, response.getheader("Location", "")
    finally:
        conn.close()


def _issuer(port: int, host: str, root: Path) -> str:
    """A verifying TLS handshake with SNI ``host`` trusting only ``root``: the issuer's CN."""
    ctx = ssl.create_default_context(cafile=str(root))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname=host) as conn,
    ):
        issuer = dict(item[0] for item in conn.getpeercert()["issuer"])
        return issuer["commonName"]


def _start_time(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _tree(pid: int) -> dict[int, str]:
    """Every process below ``pid``, with its start time (a recycled pid is not the same one)."""
    found: dict[int, str] = {}
    todo = [pid]
    while todo:
        current = todo.pop()
        with contextlib.suppress(OSError):
            for child in Path(f"/proc/{current}/task/{current}/children").read_text().split():
                started = _start_time(int(child))
                if started is not None:
                    found[int(child)] = started
                    todo.append(int(child))
    return found


def _still_running(processes: dict[int, str]) -> list[int]:
    return [pid for pid, started in processes.items() if _start_time(pid) == started]


def _acl_users(port: int, admin_password: str) -> set[str]:
    """The users of the Redis on ``port``, asked as the operator's ``admin``; refused without
    a password first (the default user is off)."""
    anonymous = redis_py.Redis("127.0.0.1", port, socket_timeout=5)
    try:
        with pytest.raises(redis_py.AuthenticationError):
            anonymous.ping()
    finally:
        anonymous.close()
    admin = redis_py.Redis("127.0.0.1", port, username="admin", password=admin_password,
                           socket_timeout=5, decode_responses=True)  # fmt: skip
    try:
        return set(admin.acl_users())
    finally:
        admin.close()


@pytest.fixture
def demo_dir():
    # Not under pytest's basetemp: pytest makes that 0700 again at every session's start, and
    # the panel runs on the nodes as a uid of its own that must reach the database in VAR_DIR.
    path = Path(tempfile.mkdtemp(prefix="demo-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.timeout(420)
@pytest.mark.parametrize("mode", ["single", "sentinel"])
def test_the_demo_serves_its_apps_and_one_signal_stops_everything(demo_dir, mode):
    tmp_path = demo_dir
    # One run of free ports for all, so that no two are the same: the proxy's three, the four
    # nodes', Redis (with Sentinel: the master, then its replica) and the three sentinels.
    first = _free_run(12)
    proxy, tls, admin = first, first + 1, first + 2
    node_base, redis, sentinel = first + 3, first + 7, first + 9
    env = {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", "/root"),
        "LANG": "C.UTF-8",
        "VAR_DIR": str(tmp_path / "var"),
        "DEMO_REDIS_PORT": str(redis),
        "PROXY_PORT": str(proxy),
        "PROXY_TLS_PORT": str(tls),
        "PROXY_ADMIN_PORT": str(admin),
        "NODE_BASE_PORT": str(node_base),
    }
    if mode == "sentinel":
        env.update({"DEMO_REDIS": "sentinel", "DEMO_SENTINEL_PORT": str(sentinel)})
    output = (tmp_path / "demo.log").open("wb")
    demo = subprocess.Popen(
        [sys.executable, "-m", "scripts.demo"],
        cwd=REPO_ROOT,
        env=env,
        stdout=output,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    started: dict[int, str] = {}
    try:
        wait_until(lambda: demo.poll() is None and _get(proxy, APP)[0] == 200, 240, interval=0.5,
                   what=f"{APP} served through the demo's proxy")  # fmt: skip
        status, location = _get(proxy, "panel.localhost")  # the panel, hosted on a node
        assert (status, location) == (302, "/accounts/login/"), (status, location)
        printed = (tmp_path / "demo.log").read_text(errors="replace")
        assert f"http://panel.localhost:{proxy}/" in printed
        ca = tmp_path / "var" / "tls" / "ca.pem"
        assert f"curl --cacert {ca} https://panel.localhost:{tls}/" in printed
        acme_root = tmp_path / "var" / "tls" / "acme-root.pem"
        if os.path.exists("/usr/bin/pebble"):
            assert str(acme_root) in printed  # the start-up screen says which root to trust
            issuer = wait_until(lambda: _issuer(tls, APP, acme_root), 120, interval=0.5,
                                what=f"{APP}'s certificate from the local ACME server")  # fmt: skip
            assert issuer.startswith("Pebble")
        # Every Redis instance with the platform's users (and a group's own), none without one.
        users_file = tmp_path / "var" / "redis" / "users.json"
        passwords = json.loads(users_file.read_text())
        assert set(ROLES) <= set(passwords) and "node-b1" in passwords, sorted(passwords)
        group = {"replica", "sentinel"} if mode == "sentinel" else set()
        for port in [redis, redis + 1] if mode == "sentinel" else [redis]:
            assert _acl_users(port, passwords["admin"]) == {"default", *passwords, *group}
        started = _tree(demo.pid)
        assert len(started) > 10, started  # redis, honcho, celery, four nodes, their apps, ...
        # A signal to the demo alone, not to its process group: it must stop everything.
        demo.send_signal(signal.SIGINT)
        demo.wait(90)
        wait_until(lambda: not _still_running(started), 30, interval=0.2,
                   what="every process the demo started to stop")  # fmt: skip
    except BaseException:
        # What the demo printed, and the panel's own error log: why it did not come up.
        print((tmp_path / "demo.log").read_text(errors="replace")[-20000:])
        for log in sorted((tmp_path / "var").glob("log/*/panel*.error.log")):
            print(f"--- {log}\n{log.read_text(errors='replace')[-5000:]}")
        raise
    finally:
        # Everything it started, also when the test failed before looking: the nodes start
        # each app in a session of its own, out of reach of the demo's process group.
        started.update(_tree(demo.pid))
        for pid in _still_running(started):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(demo.pid, signal.SIGKILL)
        demo.wait(10)
        output.close()
