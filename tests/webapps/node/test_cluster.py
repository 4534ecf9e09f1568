"""Two real nodes routed by a real table in Redis, with the real panel hosted on each."""

from __future__ import annotations

import http.client
import json
import os
import threading

import pytest
import redis

from proxy.engine import Engine
from proxy.front import FrontResolver
from routing import ALGORITHM, Backend, RouteTable, reload_path, route_key
from routing.fleet import Member, member_key
from routing.keys import load_or_create_signing_key
from routing.publish import publish_table
from tests.support import LoopThread, free_port, wait_until
from tests.webapps.node.support import add_apps, answer_app, every_worker_ready, write_app
from webapps.node.control import call

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


def lifecycle(app: dict) -> dict:
    """What a restart changes in an app's status (its memory and idle time vary anyway)."""
    return {k: app[k] for k in ("phase", "pid", "restarts", "generation", "failures")}


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
    assert lifecycle(nodes[other].app(DOMAIN)) == lifecycle(before[other])  # same pid, no restart
    assert nodes[other].request(TYPED)[2] == "v1"


def test_a_reload_with_broken_code_reports_the_traceback_and_a_fix_recovers(cluster, platform):
    nodes, publish, token = cluster
    table = publish(1)
    node = nodes[table.backend_for(DOMAIN).name]
    assert node.request(TYPED)[0] == 200
    every_worker_ready(lambda: node.app(DOMAIN))
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


class OlderProxyResolver(FrontResolver):
    """A proxy of an older version: routes reload URLs by the domain as typed in the URL, case
    kept (the incident's bug), and everything else as the current code does."""

    def key(self, head) -> str:
        parts = head.path.split("?")[0].rstrip("/").split("/")
        if head.host.decode("latin-1") == PANEL and parts[-1:] == ["reload"]:
            return parts[-2]
        return super().key(head)


def spelling_routed_elsewhere(table: RouteTable) -> str:
    """A spelling of DOMAIN whose case-kept form the table gives to another node."""
    serving = table.backend_for(DOMAIN).name
    for mask in range(1, 2**8):
        typed = "".join(c.upper() if i < 8 and mask >> i & 1 else c for i, c in enumerate(DOMAIN))
        if table.backend_for(typed).name != serving:
            return typed
    raise AssertionError("no spelling of the domain routes elsewhere")


def test_a_reload_misrouted_by_an_older_proxy_is_counted_flagged_and_still_done(cluster, platform):
    nodes, publish, token = cluster
    table = publish(1)
    serving = table.backend_for(DOMAIN).name
    typed = spelling_routed_elsewhere(table)
    wrong = table.backend_for(typed).name
    for node in nodes.values():  # both follow version 1 and run the app
        wait_until(lambda node=node: node.request(TYPED)[2] == "v1", what="the app")
    loop = LoopThread(timeout=60.0)
    port = free_port()

    async def start_proxy() -> Engine:
        engine = Engine(OlderProxyResolver(lambda: table, PANEL))
        await engine.listen("127.0.0.1", port)
        return engine

    engine = loop.run(start_proxy())
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=90)
        conn.request(
            "POST",
            f"/api/v0/user/IronHand/webapps/{typed}/reload/",
            headers={"Host": PANEL, "Authorization": f"Token {token}", "Content-Length": "0"},
        )
        response = conn.getresponse()
        answer = json.loads(response.read())
        conn.close()
    finally:
        loop.run(engine.shutdown(grace=5))
        loop.stop()

    assert (response.status, answer["backend"], answer["result"]) == (200, wrong, "reloaded")
    assert answer["misrouted"] is True
    assert f"sends this app's traffic to {serving}, not to {wrong}" in answer["warning"]
    assert answer["warning"] in answer["summary"]
    reloads = call(nodes[wrong].control_socket, {"op": "status"}, timeout=10)["reloads"]
    assert reloads["misrouted"] == 1
    assert call(nodes[serving].control_socket, {"op": "status"}, timeout=10)["reloads"] == {
        "reloaded": 0,
        "not_running": 0,
        "failed": 0,
        "misrouted": 0,
    }
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    try:  # the fleet page's line for the node
        key = member_key("node", wrong, platform.env["REDIS_PREFIX"])
        wait_until(
            lambda: (raw := client.get(key)) and Member.from_json(raw).misrouted_reloads == 1,
            timeout=20,
            what="the misrouted reload in the node's heartbeat",
        )
    finally:
        client.close()
