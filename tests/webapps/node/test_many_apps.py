"""A node with more apps than it may run at once, and cold starts: a real NodeServer on loopback
(the lookup is a dict), real gunicorn processes.

The cap counts processes: a sampler thread watches this process's children (the node runs in
the test's process, so every app's gunicorn master is one of them) independently of the
supervisor's own bookkeeping.
"""

from __future__ import annotations

import http.client
import threading
from pathlib import Path

import pytest

from tests.support import wait_until
from tests.webapps.node.support import answer_app, node_with, write_app
from webapps.node.control import call
from webapps.node.spec import AppSpec

CAP = 2
APPS = 8
# An app whose requests wait until a file named "gate" appears beside its code.
GATED = """
    import os, time
    def application(environ, start_response):
        gate = os.path.join(os.path.dirname(__file__), "gate")
        while not os.path.exists(gate):
            time.sleep(0.01)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"slow done"]
"""


@pytest.fixture
def make_node(short_tmp, home_root, loop_thread):
    made = []

    def make(apps, **options):
        config, server = node_with(short_tmp, home_root, loop_thread, apps, **options)
        made.append(server)
        return config, server

    yield make
    for server in made:
        loop_thread.run(server.stop(), timeout=60)


def get(port: int, host: str, timeout: float = 60.0) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", "/", headers={"Host": host})
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def app_masters() -> set[int]:
    """Live gunicorn masters among this process's children (zombies are not running)."""
    found = set()
    for children in Path("/proc/self/task").glob("*/children"):
        try:
            pids = children.read_text().split()
        except OSError:
            continue
        for pid in pids:
            try:
                stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if stat[0] != "Z" and b"gunicorn" in cmdline and b".many.test" in cmdline:
                found.add(int(pid))
    return found


def test_a_load_over_four_times_the_cap_gets_every_answer_with_at_most_cap_processes(
    make_node, home_root
):
    apps = {}
    for i in range(APPS):
        domain = f"app{i}.many.test"
        source = write_app(home_root, "alice", domain, answer_app(f"I am {domain}"))
        apps[domain] = AppSpec(name=domain, source_directory=str(source), owner="alice")
    config, server = make_node(apps, max_running=CAP)
    order = sorted(apps)
    errors: list[str] = []
    answered: list[str] = []
    most = [0]
    done = threading.Event()

    def sample():
        while not done.is_set():
            most[0] = max(most[0], len(app_masters()))
            done.wait(0.005)

    def client(offset: int):
        for n in range(2 * APPS):  # round-robin, twice over every app, each from its own place
            domain = order[(offset + n) % APPS]
            try:
                status, body = get(config.port, domain)
            except OSError as exc:
                errors.append(f"{domain}: {exc!r}")
                continue
            if (status, body) != (200, f"I am {domain}"):
                errors.append(f"{domain}: {status} {body[:300]}")
            else:
                answered.append(domain)

    sampler = threading.Thread(target=sample)
    sampler.start()
    clients = [threading.Thread(target=client, args=(k * 3,)) for k in range(3)]
    try:
        for t in clients:
            t.start()
        for t in clients:
            t.join(300)
    finally:
        done.set()
        sampler.join(10)
    assert errors == []
    assert len(answered) == 3 * 2 * APPS
    assert 1 <= most[0] <= CAP
    status = call(config.control_socket, {"op": "status"}, timeout=10)
    capacity = status["capacity"]
    assert capacity["max_running"] == CAP and capacity["peak_running"] <= CAP
    assert capacity["running"] <= CAP and capacity["evictions"] > 0
    assert capacity["starts"] >= APPS  # every app was cold-started at least once
    running = [a for a in status["apps"] if a["phase"] == "running"]
    assert 1 <= len(running) <= CAP
    # A start is served by its first worker; the second joins soon after: a master and its 2
    # workers, each with some memory.
    for name in (a["name"] for a in running):
        app = wait_until(lambda name=name: _full(server, name), what=f"{name}'s second worker")
        assert app["rss_bytes"] > 3 * 1024 * 1024
    stopped = [a for a in status["apps"] if a["phase"] == "stopped"]
    assert stopped and all(a["rss_bytes"] is None for a in stopped)
    assert status["rss_bytes"] > 10 * 1024 * 1024  # the node itself


def _full(server, name):
    app = next(a for a in server.supervisor.status() if a["name"] == name)
    return app if app["processes"] == 3 else None


def test_a_busy_app_is_not_stopped_while_an_idle_one_can_be(make_node, home_root):
    slow = write_app(home_root, "alice", "slow.many.test", GATED)
    apps = {"slow.many.test": AppSpec(name="slow.many.test", source_directory=str(slow),
                                      owner="alice")}  # fmt: skip
    for name in ("idle", "third"):
        domain = f"{name}.many.test"
        source = write_app(home_root, "alice", domain, answer_app(name))
        apps[domain] = AppSpec(name=domain, source_directory=str(source), owner="alice")
    config, server = make_node(apps, max_running=2)
    # slow is the least recently used, and busy; idle was used after it, and is idle
    pending: list[tuple[int, str]] = []
    first = threading.Thread(target=lambda: pending.append(get(config.port, "slow.many.test")))
    first.start()
    wait_until(lambda: server.resolver.inflight.get("slow.many.test"), what="a request in flight")
    assert get(config.port, "idle.many.test") == (200, "idle")
    assert get(config.port, "third.many.test") == (200, "third")
    phases = {a["name"]: a["phase"] for a in server.supervisor.status()}
    assert phases["slow.many.test"] == "running" and phases["idle.many.test"] == "stopped"
    (slow / "gate").write_text("")
    first.join(30)
    assert pending == [(200, "slow done")]


def test_when_every_running_app_stays_busy_the_oldest_is_stopped_gracefully(make_node, home_root):
    slow = write_app(home_root, "alice", "slow.many.test", GATED)
    other = write_app(home_root, "alice", "other.many.test", answer_app("other"))
    apps = {
        "slow.many.test": AppSpec(name="slow.many.test", source_directory=str(slow), owner="alice"),
        "other.many.test": AppSpec(
            name="other.many.test", source_directory=str(other), owner="alice"
        ),
    }
    config, server = make_node(apps, max_running=1, stop_timeout=6.0)  # graceful: 4 s
    answers: dict[str, tuple[int, str]] = {}
    first = threading.Thread(target=lambda: answers.update(slow=get(config.port, "slow.many.test")))
    first.start()
    wait_until(lambda: server.resolver.inflight.get("slow.many.test"), what="a request in flight")
    second = threading.Thread(
        target=lambda: answers.update(other=get(config.port, "other.many.test"))
    )
    second.start()
    # After the stop timeout with the only running app busy, that app is asked to stop...
    wait_until(lambda: _phase(server, "slow.many.test") == "stopping", 20, what="slow stopping")
    (slow / "gate").write_text("")  # ...and its request in flight still finishes
    first.join(30)
    second.join(30)
    assert answers == {"slow": (200, "slow done"), "other": (200, "other")}


def test_an_app_busy_past_the_idle_timeout_is_not_stopped_as_idle(make_node, home_root):
    slow = write_app(home_root, "alice", "long.many.test", GATED)
    apps = {"long.many.test": AppSpec(name="long.many.test", source_directory=str(slow),
                                      owner="alice")}  # fmt: skip
    config, server = make_node(apps, idle_timeout=0.5)
    answers = []
    first = threading.Thread(target=lambda: answers.append(get(config.port, "long.many.test")))
    first.start()
    wait_until(lambda: server.resolver.inflight.get("long.many.test"), what="a request in flight")

    def idle_for(seconds: float) -> bool:
        (app,) = server.supervisor.status()
        return (app["idle_seconds"] or 0) >= seconds

    # Unused (no new request) for three times the idle timeout, but busy: still running.
    wait_until(lambda: idle_for(1.5), what="three idle timeouts without a new request")
    assert _phase(server, "long.many.test") == "running"
    (slow / "gate").write_text("")
    first.join(30)
    assert answers == [(200, "slow done")]
    # Once nothing is in flight, the idle stop applies.
    wait_until(lambda: _phase(server, "long.many.test") == "stopped", 20, what="the idle stop")


def _phase(server, name):
    return next(a["phase"] for a in server.supervisor.status() if a["name"] == name)


def test_requests_during_a_cold_start_wait_for_the_first_worker(make_node, home_root):
    # The first worker to import the app goes on; every later one hangs in its import. A start
    # that waited for every worker would time out; a request waits for the first one.
    source = write_app(
        home_root,
        "alice",
        "halfway.many.test",
        """
        import os, time
        try:
            os.close(os.open(os.path.join(os.path.dirname(__file__), "first"),
                             os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            time.sleep(30)
        def application(environ, start_response):
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"served by the first worker"]
        """,
    )
    apps = {"halfway.many.test": AppSpec(name="halfway.many.test", source_directory=str(source),
                                         owner="alice", workers=2)}  # fmt: skip
    config, _ = make_node(apps, start_timeout=10.0)
    answers: list[tuple[int, str]] = []
    clients = [
        threading.Thread(target=lambda: answers.append(get(config.port, "halfway.many.test")))
        for _ in range(3)
    ]
    for t in clients:
        t.start()
    for t in clients:
        t.join(60)
    assert answers == [(200, "served by the first worker")] * 3


def test_a_cold_start_past_the_start_timeout_is_a_clear_error_page(make_node, home_root):
    source = write_app(home_root, "alice", "stuck.many.test", "import time\ntime.sleep(30)\n")
    apps = {"stuck.many.test": AppSpec(name="stuck.many.test", source_directory=str(source),
                                       owner="alice")}  # fmt: skip
    config, _ = make_node(apps, start_timeout=1.0)
    status, body = get(config.port, "stuck.many.test")
    assert status == 502
    assert "stuck.many.test" in body and "did not answer within 1 s of starting" in body
