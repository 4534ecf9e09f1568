"""Starts the whole platform from `scripts.platform.process_table` on free ports, for tests.

Every process runs in its own session so that stopping it takes its children (gunicorn workers
of the nodes) with it. Nothing waits a fixed time: readiness is polled with deadlines.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import subprocess
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import urlencode

import redis

from routing import RouteTable
from routing.keys import trusted_keys_from
from routing.signing import verified_table
from scripts import redis_users
from scripts.platform import REPO_ROOT, NodeSpec, PlatformConfig, process_table
from tests.support import RedisServer, free_port, run_python, wait_until


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self):
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


def request(
    port: int,
    method: str,
    path: str,
    *,
    host: str,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    timeout: float = 30.0,
) -> Response:
    """One HTTP/1.1 request to 127.0.0.1:port with the Host header exactly as given."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers={"Host": host, **(headers or {})})
        raw = conn.getresponse()
        return Response(raw.status, {k.lower(): v for k, v in raw.getheaders()}, raw.read())
    finally:
        conn.close()


@dataclass
class Platform:
    config: PlatformConfig
    redis: RedisServer
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def log_dir(self) -> Path:
        return self.config.var_dir / "process-logs"

    # --- processes ------------------------------------------------------------------------
    def start(self, name: str) -> None:
        argv = process_table(self.config)[name]
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child
        self.processes[name] = subprocess.Popen(
            argv,
            cwd=REPO_ROOT,
            env=self.config.child_environment(name),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()

    def stop(self, name: str, sig: int = signal.SIGTERM, timeout: float = 20.0) -> None:
        process = self.processes.pop(name, None)
        if process is None or process.poll() is not None:
            return
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout)

    def kill(self, name: str) -> None:
        """Kill a process and its whole group at once, as a crashed machine would."""
        self.stop(name, signal.SIGKILL)

    def stop_all(self, timeout: float = 20.0) -> None:
        # The proxy first, so that nothing routes to a node that is going away; then every other
        # process at once, since each takes a few seconds to finish in-flight work.
        self.stop("proxy", timeout=timeout)
        for process in self.processes.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for name in list(self.processes):
            self.stop(name, timeout=timeout)
        self.kill_strays()

    def kill_strays(self) -> None:
        """Kill any process still running from this platform's directory: app processes of a
        node that a test killed outright have no parent left to stop them."""
        marker = str(self.config.var_dir).encode()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if marker in cmdline:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(entry.name), signal.SIGKILL)

    # --- management commands ---------------------------------------------------------------
    def python(self, *args: str, timeout: float = 120.0) -> str:
        """Run the project's Python with the platform's settings; its stdout, or RuntimeError."""
        return run_python(self.config.child_environment(), *args, timeout=timeout)

    def manage(self, *args: str, timeout: float = 120.0) -> str:
        return self.python("manage.py", *args, timeout=timeout)

    def django_script(self, code: str, timeout: float = 120.0) -> str:
        """Run Python with Django set up against the platform's database; return its stdout."""
        return self.python("-c", "import django\ndjango.setup()\n" + code, timeout=timeout)

    # --- HTTP through the proxy --------------------------------------------------------------
    def via_proxy(self, method: str, path: str, *, host: str, **kwargs) -> Response:
        return request(self.config.proxy_port, method, path, host=host, **kwargs)

    def proxy_admin(self, path: str) -> Response:
        return request(self.config.proxy_admin_port, "GET", path, host="127.0.0.1")

    def proxy_table_version(self) -> int | None:
        """The route table version every proxy worker holds (the lowest), from its metrics."""
        versions = [
            int(float(line.rsplit(" ", 1)[1]))
            for line in self.proxy_admin("/metrics").text.splitlines()
            if line.startswith(("proxy_route_table_version{", "proxy_route_table_version "))
        ]
        return min(versions) if versions else None


NODE_NAMES = ("b1", "b2", "b3", "b4")
# The fleet as make_config lays it out: each member has a Redis user of its own.
MEMBERS = (*(("node", name) for name in NODE_NAMES), ("proxy", PlatformConfig.proxy_name))


def start_redis(var_dir: Path) -> tuple[RedisServer, dict[str, str]]:
    """The platform's Redis with access control, as the demo starts it: (server, user -> URL)."""
    acl = redis_users.write_acl_file(var_dir, members=MEMBERS)
    server = RedisServer(args=("--aclfile", str(acl))).start()
    return server, redis_users.urls(server.url, redis_users.ensure_passwords(var_dir, MEMBERS))


def make_config(
    var_dir: Path, redis_url: str, redis_urls: dict[str, str] | None = None
) -> PlatformConfig:
    return PlatformConfig(
        var_dir=var_dir,
        redis_url=redis_url,
        redis_urls=redis_urls,
        database_url=f"sqlite:///{var_dir / 'db.sqlite3'}",
        proxy_port=free_port(),
        proxy_tls_port=free_port(),
        proxy_admin_port=free_port(),
        nodes=tuple(NodeSpec(name, free_port()) for name in NODE_NAMES),
        republish_seconds=2,
    )


class Session:
    """A signed-in browser without the browser: cookies and CSRF for form posts."""

    def __init__(self, platform: Platform, host: str) -> None:
        self.platform = platform
        self.host = host
        self.cookies: dict[str, str] = {}

    def _headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = dict(extra or {})
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        return headers

    def _remember(self, response: Response) -> Response:
        raw = response.headers.get("set-cookie")
        if raw:
            jar = SimpleCookie()
            jar.load(raw)
            self.cookies.update({k: m.value for k, m in jar.items()})
        return response

    def get(self, path: str) -> Response:
        return self._remember(
            self.platform.via_proxy("GET", path, host=self.host, headers=self._headers())
        )

    def post_form(
        self, path: str, data: dict[str, str], extra_headers: dict[str, str] | None = None
    ) -> Response:
        body = urlencode(data).encode()
        headers = self._headers({
            **(extra_headers or {}),
            "Content-Type": "application/x-www-form-urlencoded",
            "X-CSRFToken": self.cookies.get("csrftoken", ""),
            "Origin": f"http://{self.host}",
            "Referer": f"http://{self.host}/",
        })  # fmt: skip
        return self._remember(
            self.platform.via_proxy("POST", path, host=self.host, headers=headers, body=body)
        )


def wait_for_http(port: int, path: str, host: str, timeout: float = 60.0, what: str = "") -> None:
    wait_until(
        lambda: request(port, "GET", path, host=host, timeout=2).status < 500,
        timeout,
        interval=0.1,
        what=what or f"http://127.0.0.1:{port}{path}",
    )


def routing_table(platform: Platform) -> RouteTable:
    """The table as published in Redis (its signature verified): what every proxy and node
    routes by."""
    client = redis.Redis.from_url(platform.config.redis_url_for("reader"), socket_timeout=5)
    try:
        raw, line = client.mget(["hosting:routes", "hosting:routes:sig"])
        trusted = trusted_keys_from(platform.config.var_dir, None)
        return verified_table(raw, line, trusted)[0]
    finally:
        client.close()
