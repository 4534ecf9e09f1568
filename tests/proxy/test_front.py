"""The front proxy as a process (`python -m proxy`): routes from Redis through the subscriber,
the admin port, TLS, workers, signals. Real Redis, real sockets, real processes."""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import threading
import time
import urllib.request

import pytest
import redis

from routing import Backend, RouteTable, reload_path, route_key
from routing.publish import DEFAULT_PREFIX
from routing.signing import public_key_text, sign
from tests.proxy.support import Origin, connect, exchange, get, read_response
from tests.routing.support import PUBLISHER
from tests.support import RedisServer, child_env, free_port, port_open, repo_root, wait_until

PANEL = "panel.test"
PREFIX = DEFAULT_PREFIX


@pytest.fixture
def redis_server():
    server = RedisServer().start()
    yield server
    server.cleanup()


@pytest.fixture
def backends(lt):
    servers = [Origin(lt, "b1").start(), Origin(lt, "b2").start()]
    yield servers
    for s in servers:
        s.stop()


def table_for(backends, version: int, states: dict[str, str] | None = None) -> RouteTable:
    states = states or {}
    return RouteTable(
        version=version,
        algorithm="rendezvous-xxh3-v1",
        backends=tuple(
            Backend(o.name, o.address, 1, states.get(o.name, "active")) for o in backends
        ),
    )


def put_table(redis_url: str, table: RouteTable) -> None:
    """The Redis contract: the table as JSON under <prefix>routes, its signature line (by the
    publisher's key, which the proxy trusts) under <prefix>routes:sig, its version on the
    channel."""
    client = redis.Redis.from_url(redis_url)
    try:
        raw = table.to_json().encode()
        client.mset({PREFIX + "routes": raw, PREFIX + "routes:sig": sign(raw, PUBLISHER)})
        client.publish(PREFIX + "routes:changed", table.version)
    finally:
        client.close()


class ProxyProcess:
    def __init__(self, redis_url: str, state_file: str, *extra: str) -> None:
        self.port = free_port()
        self.admin = free_port()
        self.args = [
            "--listen", f"127.0.0.1:{self.port}",
            "--admin-listen", f"127.0.0.1:{self.admin}",
            "--redis", redis_url,
            "--panel-host", PANEL,
            "--state-file", state_file,
            "--poll-interval", "0.2",
            "--trusted-keys", public_key_text(PUBLISHER.public_key()),
            "--log-level", "WARNING",
            *extra,
        ]  # fmt: skip
        self.process: subprocess.Popen | None = None

    def start(self, ready: bool = True) -> ProxyProcess:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "proxy", *self.args],
            cwd=repo_root(),
            env=child_env(),
            start_new_session=True,
        )
        self.wait(lambda: port_open("127.0.0.1", self.admin), "proxy admin port")
        if ready:
            self.wait(lambda: self.admin_get("/healthz")[0] == 200, "proxy ready")
        return self

    def wait(self, predicate, what: str) -> None:
        assert self.process is not None
        wait_until(lambda: predicate() or self.process.poll() is not None, 20, what=what)
        assert self.process.poll() is None, f"the proxy exited with {self.process.returncode}"

    def admin_get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.admin}{path}", timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode()

    def stop(self) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)
        code, self.process = self.process.returncode, None
        return code


@pytest.fixture
def start_proxy(redis_server, tmp_path):
    procs: list[ProxyProcess] = []

    def start(*extra: str, ready: bool = True, redis_url: str | None = None) -> ProxyProcess:
        proc = ProxyProcess(
            redis_url or redis_server.url, str(tmp_path / "routes.json"), *extra
        ).start(ready)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.stop()


def served_by(port: int, host: str, path: str = "/") -> str | None:
    return exchange(port, get(host=host, path=path)).header("X-Origin")


def two_hosts_on_different_backends(table: RouteTable) -> dict[str, str]:
    """Host names whose keys land on b1 and on b2 in ``table``."""
    found: dict[str, str] = {}
    for i in range(200):
        host = f"App{i}.Example.COM"
        name = table.backend_for(route_key(host, "/", PANEL)).name
        found.setdefault(name, host)
        if len(found) == 2:
            return found
    raise AssertionError("no two hosts on different backends")


def test_it_is_not_ready_before_a_table_and_answers_503(start_proxy):
    proxy = start_proxy(ready=False)
    assert proxy.admin_get("/healthz")[0] == 503
    resp = exchange(proxy.port, get())
    assert resp.status == 503 and resp.header("Retry-After")


def test_it_routes_every_spelling_of_a_host_to_the_backend_of_its_canonical_key(
    start_proxy, redis_server, backends
):
    table = table_for(backends, 1)
    put_table(redis_server.url, table)
    proxy = start_proxy()
    for name, host in two_hosts_on_different_backends(table).items():
        for spelling in (host, host.lower(), host.upper() + ".", host + ":80"):
            assert served_by(proxy.port, spelling) == name


def test_a_reload_url_on_the_panel_goes_to_the_backend_serving_the_app(
    start_proxy, redis_server, backends
):
    table = table_for(backends, 1)
    put_table(redis_server.url, table)
    proxy = start_proxy()
    panel_backend = table.backend_for(route_key(PANEL, "/", PANEL)).name
    hosts = two_hosts_on_different_backends(table)
    other = "b2" if panel_backend == "b1" else "b1"
    path = reload_path("Alice", hosts[other])
    assert served_by(proxy.port, PANEL.upper(), path) == other
    assert served_by(proxy.port, PANEL, "/api/v0" + path) == other


def test_an_invalid_host_is_a_400_that_reaches_no_backend(start_proxy, redis_server, backends):
    put_table(redis_server.url, table_for(backends, 1))
    proxy = start_proxy()
    assert exchange(proxy.port, get(host="user@evil.test")).status == 400
    assert all(b.received == b"" for b in backends)


def test_no_active_backend_is_a_503_with_retry_after(start_proxy, redis_server, backends):
    put_table(redis_server.url, table_for(backends, 1, {"b1": "draining", "b2": "disabled"}))
    proxy = start_proxy()
    resp = exchange(proxy.port, get())
    assert resp.status == 503 and resp.header("Retry-After") == "5"


def test_the_admin_port_shows_the_route_and_metrics(start_proxy, redis_server, backends):
    table = table_for(backends, 3)
    put_table(redis_server.url, table)
    proxy = start_proxy()
    exchange(proxy.port, get(host="Shop.Example.com"))
    status, body = proxy.admin_get("/route?host=Shop.Example.com.&path=/")
    doc = json.loads(body)
    assert status == 200
    assert doc["key"] == "shop.example.com"
    assert doc["backend"] == table.backend_for("shop.example.com").name
    assert doc["table_version"] == 3
    status, text = proxy.admin_get("/metrics")
    assert status == 200
    backend = doc["backend"]
    assert f'proxy_requests_total{{worker="0",backend="{backend}",status="200"}} 1' in text
    assert 'proxy_route_table_version{worker="0"} 3' in text
    assert 'proxy_redis_connected{worker="0"} 1' in text
    assert "proxy_request_duration_seconds_bucket" in text
    assert f'proxy_pool_idle_connections{{worker="0",backend="{backend}"}} 1' in text


def test_the_route_endpoint_explains_an_invalid_host(start_proxy, redis_server, backends):
    put_table(redis_server.url, table_for(backends, 1))
    proxy = start_proxy()
    status, body = proxy.admin_get("/route?host=a%20b")
    assert status == 400 and "invalid host" in json.loads(body)["error"]


REDIS_OUTAGE = 30.0  # seconds, as the proxy's issue asks


class _Load:
    """Keep-alive GETs from two threads per Host until stopped; counts answers from the
    expected backend (``hosts``: backend name -> Host, or ``accept``: Host -> the backends it
    may be answered by) and records anything else, with the time it happened."""

    def __init__(
        self,
        port: int,
        hosts: dict[str, str],
        threads_per_host: int = 2,
        accept: dict[str, set[str]] | None = None,
    ) -> None:
        self.port = port
        self.ok = 0
        self.by_backend: dict[str, int] = {}
        self.first_answer: dict[tuple[str, str], float] = {}  # (Host, backend) -> when
        self.accept = accept or {host: {backend} for backend, host in hosts.items()}
        self.failures: list[str] = []
        self.failed_at: list[float] = []
        self.stopping = threading.Event()
        self.threads = [
            threading.Thread(target=self._run, args=(host, backend), daemon=True)
            for backend, host in hosts.items()
            for _ in range(threads_per_host)
        ]

    def __enter__(self) -> _Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopping.set()
        for t in self.threads:
            t.join(10)

    def _run(self, host: str, backend: str) -> None:
        sock = None
        while not self.stopping.is_set():
            try:
                if sock is None:
                    sock = connect(self.port)
                sock.sendall(get(host=host))
                response = read_response(sock)
            except OSError as exc:
                self.failures.append(f"{host}: {exc!r}")
                self.failed_at.append(time.monotonic())
                sock = None
                continue
            origin = response.header("X-Origin")
            if response.status == 200 and origin in self.accept[host]:
                self.ok += 1
                self.by_backend[origin] = self.by_backend.get(origin, 0) + 1
                self.first_answer.setdefault((host, origin), time.monotonic())
            else:
                self.failures.append(f"{host}: {response.status} from {origin}")
                self.failed_at.append(time.monotonic())
        if sock is not None:
            sock.close()


def redis_connected(proxy) -> int:
    _, body = proxy.admin_get("/metrics")
    line = next(x for x in body.splitlines() if x.startswith("proxy_redis_connected"))
    return int(float(line.rsplit(" ", 1)[1]))


@pytest.mark.e2e
def test_a_redis_outage_under_load_fails_no_request_and_later_changes_apply_at_once(
    start_proxy, redis_server, backends
):
    table = table_for(backends, 1)
    put_table(redis_server.url, table)
    proxy = start_proxy()
    hosts = two_hosts_on_different_backends(table)
    with _Load(proxy.port, hosts) as load:
        wait_until(lambda: load.ok > 100, 10, what="load flowing")
        redis_server.process.kill()  # no goodbye to the subscriber
        redis_server.process.wait(10)
        redis_server.process = None
        outage_ends = time.monotonic() + REDIS_OUTAGE
        wait_until(lambda: redis_connected(proxy) == 0, 10, what="the proxy to see Redis gone")
        while time.monotonic() < outage_ends:
            # Requests keep being answered all through the outage, not only at its ends.
            before = load.ok
            wait_until(lambda before=before: load.ok > before + 50, 10, what="load progressing")
            assert load.failures == []
            load.stopping.wait(min(1.0, max(0.0, outage_ends - time.monotonic())))
        served_during_outage = load.ok
    assert load.failures == []
    assert served_during_outage > 1000
    redis_server.start()
    returned = time.monotonic()
    # The change the panel made meanwhile, published once Redis is back.
    put_table(redis_server.url, table_for(backends, 2, {"b1": "disabled"}))
    wait_until(lambda: served_by(proxy.port, hosts["b1"]) == "b2", 5, what="change applied")
    assert time.monotonic() - returned < 5


def test_a_restart_while_redis_is_down_routes_from_the_state_file(
    start_proxy, redis_server, backends
):
    table = table_for(backends, 1)
    put_table(redis_server.url, table)
    first = start_proxy()
    first.stop()
    redis_server.stop()
    proxy = start_proxy()
    for name, host in two_hosts_on_different_backends(table).items():
        assert served_by(proxy.port, host) == name


def test_a_backend_killed_under_load_costs_at_most_one_request_and_is_routed_around_at_once(
    start_proxy, redis_server, backends
):
    table = table_for(backends, 1)
    put_table(redis_server.url, table)
    proxy = start_proxy()  # one worker
    hosts = two_hosts_on_different_backends(table)
    accept = {hosts["b1"]: {"b1", "b2"}, hosts["b2"]: {"b2"}}
    with _Load(proxy.port, hosts, accept=accept) as load:
        wait_until(lambda: load.by_backend.get("b1", 0) > 100, 10, what="load on b1")
        killed = time.monotonic()
        backends[0].stop()  # its listener and every open connection, mid-load
        after = load.by_backend.get("b2", 0)
        wait_until(lambda: load.by_backend.get("b2", 0) > after + 200, 10, what="load on b2")
        served_by_b1 = load.by_backend["b1"]
        wait_until(lambda: load.by_backend.get("b2", 0) > after + 400, 10, what="more load")
        assert load.by_backend["b1"] == served_by_b1  # nothing reaches the dead backend
    assert len(load.failures) <= 1, load.failures
    assert all(t - killed < 2 for t in load.failed_at)
    assert load.first_answer[(hosts["b1"], "b2")] - killed < 2  # rerouted within 2 s


def test_a_killed_backend_is_routed_around(start_proxy, redis_server, backends):
    table = table_for(backends, 1)
    put_table(redis_server.url, table)
    proxy = start_proxy()
    hosts = two_hosts_on_different_backends(table)
    backends[0].stop()
    answers = [served_by(proxy.port, hosts["b1"]) for _ in range(10)]
    assert answers == ["b2"] * 10
    _, body = proxy.admin_get(f"/route?host={hosts['b1']}")
    assert json.loads(body)["down"] == ["b1"]


def test_a_post_is_not_duplicated_when_its_backend_drops_it(start_proxy, redis_server, backends):
    table = table_for(backends, 1)
    put_table(redis_server.url, table)
    proxy = start_proxy()
    host = two_hosts_on_different_backends(table)["b1"]
    raw = b"POST /drop HTTP/1.1\r\nHost: %b\r\nContent-Length: 2\r\n\r\nhi" % host.encode()
    assert exchange(proxy.port, raw).status == 502
    posts = [r for b in backends for r in b.requests if r["method"] == "POST"]
    assert len(posts) == 1


def test_it_terminates_tls_and_says_so_upstream(start_proxy, redis_server, backends, tmp_path):
    from proxy.tls import make_local_ca

    paths = make_local_ca(tmp_path / "tls", PANEL, "apps.test")
    put_table(redis_server.url, table_for(backends, 1))
    tls_port = free_port()
    proxy = start_proxy(
        "--tls-listen", f"127.0.0.1:{tls_port}",
        "--tls-cert", str(paths["cert"]), "--tls-key", str(paths["key"]),
    )  # fmt: skip
    ctx = ssl.create_default_context(cafile=str(paths["ca"]))
    with connect(tls_port) as raw, ctx.wrap_socket(raw, server_hostname="shop.apps.test") as sock:
        assert sock.version() in ("TLSv1.2", "TLSv1.3")
        sock.sendall(get(host="shop.apps.test", path="/echo"))
        seen = json.loads(read_response(sock).body)
    assert ["X-Forwarded-Proto", "https"] in seen["headers"]
    assert proxy.process is not None


def test_sigterm_lets_an_in_flight_request_finish(start_proxy, redis_server, backends):
    for b in backends:
        b.slow_seconds = 0.5
    put_table(redis_server.url, table_for(backends, 1))
    proxy = start_proxy()
    result = {}

    def client():
        result["resp"] = exchange(proxy.port, get(path="/slow-head"))

    thread = threading.Thread(target=client)
    thread.start()
    wait_until(lambda: any(b.requests for b in backends), what="request at a backend")
    assert proxy.stop() == 0
    thread.join(5)
    assert result["resp"].status == 200


def test_workers_share_the_port(start_proxy, redis_server, backends):
    put_table(redis_server.url, table_for(backends, 1))
    proxy = start_proxy("--workers", "2")
    statuses = [exchange(proxy.port, get(host=f"w{i}.test")).status for i in range(20)]
    assert statuses == [200] * 20
    assert proxy.stop() == 0


def test_500_slow_header_connections_are_closed_at_the_deadline_while_traffic_flows(
    start_proxy, redis_server, backends
):
    put_table(redis_server.url, table_for(backends, 1))
    proxy = start_proxy("--header-timeout", "1")
    slow = []
    try:
        for _ in range(500):
            sock = connect(proxy.port)
            sock.sendall(b"GET / HTTP/1.1\r\nHost: slow.test\r\n")
            slow.append(sock)
        assert [exchange(proxy.port, get()).status for _ in range(20)] == [200] * 20
        assert sum(read_response(sock).status == 408 for sock in slow) == 500
    finally:
        for sock in slow:
            sock.close()
    assert all(b"slow.test" not in b.received for b in backends)


def test_the_front_proxy_refuses_the_whole_malformed_battery_before_any_backend(
    start_proxy, redis_server, backends
):
    from tests.proxy.test_malformed import CASES, MAX_BODY

    put_table(redis_server.url, table_for(backends, 1))
    proxy = start_proxy("--max-body", str(MAX_BODY))
    got = {}
    for name, raw, _ in CASES:
        with connect(proxy.port) as sock:
            sock.sendall(raw.replace(b"app.test", b"shop.apps.test"))
            got[name] = read_response(sock).status
    assert got == {name: status for name, _, status in CASES}
    assert all(b.received == b"" for b in backends)


# --- forged tables and Redis access control ---------------------------------------------------


def refused(proxy: ProxyProcess, reason: str) -> int:
    _, text = proxy.admin_get("/metrics")
    prefix = f'proxy_route_tables_refused_total{{worker="0",reason="{reason}"}} '
    line = next(line for line in text.splitlines() if line.startswith(prefix))
    return int(line[len(prefix) :])


@pytest.fixture
def acl_redis(tmp_path):
    from scripts.redis_users import ensure_passwords, urls, write_acl_file

    server = RedisServer(args=("--aclfile", str(write_acl_file(tmp_path / "var")))).start()
    yield server, urls(server.url, ensure_passwords(tmp_path / "var"))
    server.cleanup()


def test_a_forged_table_is_ignored_counted_and_a_later_change_still_arrives(
    start_proxy, acl_redis, backends, lt
):
    from routing.publish import publish_table
    from tests.routing.support import FORGER

    _, urls = acl_redis
    publisher = redis.Redis.from_url(urls["publisher"], socket_timeout=5)
    admin = redis.Redis.from_url(urls["admin"], socket_timeout=5)
    attacker = Origin(lt, "attacker").start()
    try:
        assert publish_table(publisher, table_for(backends, 10), signing_key=PUBLISHER)
        proxy = start_proxy(redis_url=urls["reader"])
        # A reader's credentials (the proxy's) can write nothing.
        reader = redis.Redis.from_url(urls["reader"], socket_timeout=5)
        for command in (
            ("SET", PREFIX + "routes", "{}"),
            ("PUBLISH", PREFIX + "routes:changed", 1),
        ):
            with pytest.raises(redis.exceptions.NoPermissionError):
                reader.execute_command(*command)
        reader.close()

        # Someone holding a writer's credentials writes a table with a huge version and an
        # attacker's backend, signed by a key nobody trusts (then unsigned), and announces it.
        forged = table_for([attacker], 2**53 - 1)
        raw = forged.to_json().encode()
        admin.mset({PREFIX + "routes": raw, PREFIX + "routes:sig": sign(raw, FORGER)})
        admin.publish(PREFIX + "routes:changed", forged.version)
        proxy.wait(lambda: refused(proxy, "bad_signature") == 1, "the forgery counted")
        admin.delete(PREFIX + "routes:sig")
        admin.publish(PREFIX + "routes:changed", forged.version)
        proxy.wait(lambda: refused(proxy, "unsigned") == 1, "the unsigned forgery counted")
        hosts = [f"site{i}.example.com" for i in range(30)]
        for host in hosts:
            assert served_by(proxy.port, host) in ("b1", "b2")
        assert attacker.connections == 0

        # The next pool change replaces the forgery and reaches the proxy within the bound.
        changed = table_for(backends, 11, {"b1": "draining"})
        assert publish_table(publisher, changed, signing_key=PUBLISHER)
        wait_until(lambda: proxy.admin_get("/healthz")[1] == "ok version=11\n", 5, what="v11")
        assert {served_by(proxy.port, host) for host in hosts} == {"b2"}
        assert attacker.connections == 0
    finally:
        attacker.stop()
        publisher.close()
        admin.close()
