"""An app's server settings on a real node: gthread workers when it asks for threads, a changed
worker count applied by the next reload, and its own worker timeout as the node's wait."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.support import wait_until
from tests.webapps.node.support import node_with, write_app
from webapps.node.spec import AppSpec

DOMAIN = "threads.apps.test"
# Answers which thread served it: a sync worker serves on its main thread, a gthread worker on
# one of its pool's; /slow sleeps past any timeout a test sets.
APP = """
    import threading, time

    def application(environ, start_response):
        if environ["PATH_INFO"] == "/slow":
            time.sleep(30)
        body = threading.current_thread().name.encode()
        start_response("200 OK", [("Content-Type", "text/plain"),
                                  ("Content-Length", str(len(body)))])
        return [body]
"""


def get(port: int, path: str = "/") -> tuple[int, str]:
    """One request through the node on its own connection: (status, body)."""
    request = f"GET {path} HTTP/1.1\r\nHost: {DOMAIN}\r\nConnection: close\r\n\r\n".encode()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body.decode("latin-1")


def workers_of(master: int) -> list[int]:
    """The gunicorn master's worker processes (its children that still run)."""
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    alive = []
    for pid in children:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state not in ("Z", "X"):
            alive.append(int(pid))
    return alive


@pytest.fixture
def node(short_tmp, home_root, loop_thread):
    source = write_app(home_root, "alice", DOMAIN, APP)
    apps = {DOMAIN: AppSpec(name=DOMAIN, source_directory=str(source), owner="alice",
                            workers=2, threads=4)}  # fmt: skip
    config, server = node_with(short_tmp, home_root, loop_thread, apps, max_workers=4)
    yield apps, config.port, server
    loop_thread.run(server.stop(), timeout=30)


def _app(server) -> dict:
    return next(a for a in server.supervisor.status() if a["name"] == DOMAIN)


def test_threads_run_gthread_workers_and_a_new_worker_count_applies_at_reload(node, loop_thread):
    apps, port, server = node
    status, body = get(port)
    assert status == 200
    assert body.startswith("ThreadPoolExecutor"), body  # not MainThread: a gthread worker
    wait_until(lambda: _app(server)["workers_ready"] >= 2, what="both workers")
    master = _app(server)["pid"]
    assert len(workers_of(master)) == 2

    apps[DOMAIN] = AppSpec(**{**apps[DOMAIN].__dict__, "workers": 3})
    answer = loop_thread.run(server.node.dispatch({"op": "reload", "domain": DOMAIN}))
    assert answer["status"] == "OK", answer
    assert answer["workers"] == 3
    assert "workers 2 -> 3" in answer["message"]
    assert answer["summary"].startswith("Restarted with the new settings (workers 2 -> 3)")
    master = _app(server)["pid"]
    wait_until(lambda: len(workers_of(master)) == 3, what="three workers")
    assert get(port)[0] == 200


def test_the_node_holds_workers_to_its_bound(node, loop_thread):
    apps, port, server = node
    assert get(port)[0] == 200
    apps[DOMAIN] = AppSpec(**{**apps[DOMAIN].__dict__, "workers": 9})
    answer = loop_thread.run(server.node.dispatch({"op": "reload", "domain": DOMAIN}))
    assert answer["status"] == "OK", answer
    assert answer["workers"] == 4  # max_workers
    master = _app(server)["pid"]
    wait_until(lambda: len(workers_of(master)) == 4, what="four workers")


def test_a_request_past_the_apps_own_timeout_gets_the_nodes_504(node):
    apps, port, _ = node
    # Sync workers: gunicorn restarts one busy past its timeout; the node (its own request
    # timeout 60 s) waits for the first byte only as long as the app's timeout.
    apps[DOMAIN] = AppSpec(**{**apps[DOMAIN].__dict__, "threads": 1, "timeout": 5})
    status, body = get(port, "/slow")
    assert status == 504, body
    assert get(port)[1] == "MainThread"  # the app still answers, on sync workers


def test_a_restart_names_what_changed():
    from webapps.node.outcome import Result, summary
    from webapps.node.supervisor import settings_changes

    old = AppSpec(name=DOMAIN, source_directory="/srv/a", owner="alice")
    assert settings_changes(old, AppSpec(**{**old.__dict__, "workers": 4, "threads": 2})) == (
        "workers 2 -> 4, threads 1 -> 2"
    )
    # The supervisor compares the specs as they run (``bounded``: the timeout resolved).
    bounded = AppSpec(**{**old.__dict__, "timeout": 60})
    assert settings_changes(bounded, AppSpec(**{**bounded.__dict__, "timeout": 90})) == (
        "timeout 60 -> 90"
    )
    assert settings_changes(old, AppSpec(**{**old.__dict__, "uid": 7})) == "other settings"
    text = summary(
        Result.RELOADED, "b2", duration_ms=900, workers=4, generation=3,
        message="restarted with the new settings (workers 2 -> 4)",
    )  # fmt: skip
    assert text == (
        "Restarted with the new settings (workers 2 -> 4) on b2 in 900 ms (4 workers, generation 3)"
    )
    assert summary(Result.RELOADED, "b2", duration_ms=5, message="reloaded").startswith("Reloaded")
