"""Two real nodes routed by a real table in Redis, with the real panel hosted on each."""

from __future__ import annotations

import json
import os
import threading

import pytest
import redis

from routing import ALGORITHM, Backend, RouteTable, reload_path, route_key
from routing.keys import load_or_create_signing_key
from routing.publish import publish_table
from tests.support import wait_until
from tests.webapps.node.support import add_apps, answer_app, write_app

PANEL = "panel.localhost"
TYPED = "IronHand.Apps.Localhost"  # as the user typed it: mixed case
DOMAIN = "ironhand.apps.localhost"


@pytest.fixture
def cluster(platform):
    source = write_app(platform.home, "IronHand", DOMAIN, answer_app("v1"))
    tokens = add_apps(platform.env, {"IronHand": [(DOMAIN, str(source))]})
    nodes = {name: platform.node(name, "--stop-timeout", "5") for name in ("b1", "b2")}
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    prefix = platform.env["REDIS_PREFIX"]

    def publish(version: int, **states: str) -> RouteTable:
        table = RouteTable(
            version=version,
            algorithm=ALGORITHM,
            backends=tuple(
                Backend(name, node.address, state=states.get(name, "active"))
                for name, node in nodes.items()
            ),
        )
        # Signed with the machine's key under the nodes' VAR_DIR, which they trust.
        key = load_or_create_signing_key(platform.env["VAR_DIR"])
        assert publish_table(client, table, prefix=prefix, signing_key=key)
        return table

    yield nodes, publish, tokens["IronHand"]
    client.close()


def api_reload(node, token: str):
    status, _, body = node.request(
        PANEL,
        reload_path("IronHand", TYPED, api=True),
        method="POST",
        headers={"Authorization": f"Token {token}", "Content-Length": "0"},
        timeout=90,
    )
    return status, json.loads(body)


def test_traffic_and_reload_land_on_the_same_node_and_only_it_restarts(cluster, platform):
    nodes, publish, token = cluster
    table = publish(1)
    serving = table.backend_for(route_key(TYPED, "/", PANEL)).name
    reload_at = table.backend_for(route_key(PANEL, reload_path("IronHand", TYPED, api=True), PANEL))
    assert reload_at.name == serving
    other = next(name for name in nodes if name != serving)
    # The app runs on both nodes (say, the other one served it before the pool changed).
    for node in nodes.values():
        assert node.request(TYPED)[2] == "v1"
    before = {name: node.app(DOMAIN) for name, node in nodes.items()}

    write_app(platform.home, "IronHand", DOMAIN, answer_app("v2"))
    status, answer = api_reload(nodes[reload_at.name], token)

    assert (status, answer["status"], answer["backend"]) == (200, "OK", serving)
    code, headers, body = nodes[serving].request(TYPED)
    assert (code, headers["X-Backend"], body) == (200, serving, "v2")
    assert nodes[serving].app(DOMAIN)["restarts"] == before[serving]["restarts"] + 1
    assert nodes[other].app(DOMAIN) == before[other]  # same pid, no restart
    assert nodes[other].request(TYPED)[2] == "v1"


def test_a_reload_with_broken_code_reports_the_traceback_and_a_fix_recovers(cluster, platform):
    nodes, publish, token = cluster
    table = publish(1)
    node = nodes[table.backend_for(DOMAIN).name]
    assert node.request(TYPED)[0] == 200
    write_app(platform.home, "IronHand", DOMAIN, "import json\nraise ValueError('no config')\n")

    status, answer = api_reload(node, token)
    assert (status, answer["status"]) == (502, "ERROR")
    assert "ValueError: no config" in answer["log_tail"]
    code, _, page = node.request(TYPED)
    assert code == 502 and DOMAIN in page and "error log" in page
    assert node.request(PANEL, "/nothing-here/")[0] == 404  # the panel, another app, still answers

    write_app(platform.home, "IronHand", DOMAIN, answer_app("fixed"))
    status, answer = api_reload(node, token)
    assert (status, answer["status"]) == (200, "OK")
    assert node.request(TYPED)[2] == "fixed"


def test_an_app_the_table_moves_away_is_stopped_after_its_request_finishes(cluster, platform):
    nodes, publish, _ = cluster
    write_app(
        platform.home,
        "IronHand",
        DOMAIN,
        """
        import time
        def application(environ, start_response):
            if environ["PATH_INFO"] == "/slow":
                open("slow-started", "w").close()
                time.sleep(1.5)
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"done"]
    """,
    )
    table = publish(1)
    old = table.backend_for(DOMAIN).name
    node = nodes[old]
    assert node.request(TYPED)[0] == 200
    pid = node.app(DOMAIN)["pid"]
    slow: list = []
    worker = threading.Thread(target=lambda: slow.append(node.request(TYPED, "/slow")))
    worker.start()
    source = platform.home / "ironhand" / DOMAIN
    wait_until(lambda: (source / "slow-started").exists(), what="the slow request in flight")

    moved = publish(2, **{old: "draining"})
    assert moved.backend_for(DOMAIN).name != old
    worker.join(30)
    assert slow and slow[0][0] == 200 and slow[0][2] == "done"
    wait_until(lambda: node.app(DOMAIN)["phase"] == "stopped", timeout=20, what="moved away")
    assert not _alive(pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
