"""One node process, apps that misbehave: the others keep being served.

The apps share one node for the whole module (each test uses its own apps), which keeps the
module fast; every process is still stopped and checked at the end.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.support import wait_until
from tests.webapps.node.support import add_apps, answer_app, write_app
from webapps.node.control import call

OWNER = "Mallory"

MARKING = """
    import os, sys, time
    def application(environ, start_response):
        path = environ["PATH_INFO"]
        open("started" + path.replace("/", "-"), "w").close()
        if path == "/hang":
            time.sleep(600)
        if path == "/crash":
            os._exit(1)
        if path == "/loud":
            line = "y" * 1023 + "\\n"
            for _ in range(10 * 1024):
                sys.stdout.write(line)
            sys.stdout.flush()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"survived " + path.encode()]
"""
IMPORT_HANGS = """
    import time
    time.sleep(600)
"""
APPS = {
    "calm.apps.localhost": answer_app("calm"),
    "wild.apps.localhost": MARKING,
    "stuck.apps.localhost": IMPORT_HANGS,
    "steady.apps.localhost": answer_app("v1"),
}


@pytest.fixture(scope="module")
def node(module_platform):
    sources = {d: write_app(module_platform.home, OWNER, d, body) for d, body in APPS.items()}
    add_apps(module_platform.env, {OWNER: [(d, str(s)) for d, s in sources.items()]})
    node = module_platform.node("b3", "--no-routes", "--start-timeout", "4", "--stop-timeout", "4")
    node.sources = sources
    return node


def in_background(fn):
    """Run ``fn`` in a thread; its result (or the exception it raised) lands in the list."""
    results: list = []

    def run() -> None:
        try:
            results.append(fn())
        except OSError as exc:  # e.g. the hanging request cut off when the node stops
            results.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, results


def test_a_hanging_request_does_not_block_other_apps(node):
    thread, _ = in_background(lambda: node.request("wild.apps.localhost", "/hang", timeout=120))
    wait_until(lambda: (node.sources["wild.apps.localhost"] / "started-hang").exists())
    assert node.request("calm.apps.localhost")[2] == "calm"
    assert thread.is_alive()  # still hanging, and the node answered the other app meanwhile


def test_an_app_hanging_at_import_gets_502_and_others_are_served(node):
    thread, results = in_background(lambda: node.request("stuck.apps.localhost", timeout=60))
    wait_until(lambda: (node.app("stuck.apps.localhost") or {}).get("phase") == "starting")
    assert node.request("calm.apps.localhost")[2] == "calm"
    thread.join(60)
    status, _, page = results[0]
    assert status == 502 and "stuck.apps.localhost" in page and "error log" in page


def test_a_crashing_worker_fails_its_request_only_and_the_app_recovers(node):
    assert node.request("wild.apps.localhost", "/crash")[0] == 502
    assert node.request("calm.apps.localhost")[2] == "calm"
    status, _, body = node.request("wild.apps.localhost", "/after-crash")
    assert (status, body) == (200, "survived /after-crash")


def test_ten_megabytes_of_stdout_block_neither_the_node_nor_the_disk(node):
    thread, results = in_background(lambda: node.request("wild.apps.localhost", "/loud"))
    wait_until(lambda: (node.sources["wild.apps.localhost"] / "started-loud").exists())
    assert node.request("calm.apps.localhost")[2] == "calm"
    thread.join(60)
    assert results[0][0] == 200
    logs = list(node.log_dir.glob("wild.apps.localhost.server.log*"))
    assert 0 < sum(p.stat().st_size for p in logs) <= 2 * 1024 * 1024


def test_no_request_fails_while_an_app_reloads_under_a_steady_stream(node):
    domain = "steady.apps.localhost"
    assert node.request(domain)[2] == "v1"
    stop = threading.Event()

    def stream() -> list[tuple[int, str]]:
        seen = []
        while not stop.is_set():
            status, _, body = node.request(domain)
            seen.append((status, body))
        return seen

    with ThreadPoolExecutor(4) as pool:
        streams = [pool.submit(stream) for _ in range(4)]
        wait_until(lambda: node.app(domain)["restarts"] >= 1)
        write_app(node.sources[domain].parent.parent, OWNER, domain, answer_app("v2"))
        answer = call(node.control_socket, {"op": "reload", "domain": domain}, timeout=60)
        assert answer["status"] == "OK", answer
        first_after = node.request(domain)
        stop.set()
        seen = [item for s in streams for item in s.result(60)]
    assert first_after[2] == "v2"
    assert {status for status, _ in seen} == {200}
    assert {body for _, body in seen} <= {"v1", "v2"} and len(seen) > 20
