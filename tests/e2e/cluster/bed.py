"""The several-host test bed: one network namespace per host, joined by veth pairs to bridges in
a switch namespace, every process started from `scripts.platform.process_table` and bound to its
host's address.

    front 10.231.0.0/24   client .100 -- proxies p1 .11, p2 .12
    back  10.231.1.0/24   proxies -- nodes b1..b3 .21-.23 -- control .30 (Celery worker, beat)
    redis 10.231.2.0/24   Redis hosts r1..r3 .41-.43 (master on r1, replica on r2, a sentinel
                          on each) -- proxies, nodes, control

The addresses exist only inside the bed's namespaces (nothing is routed out of them, and the
machine's own namespace gets none). The database is SQLite on one file every host shares (the
hosts share the file system): the real thing for a database reached by every panel, without a
network server that the faults here do not exercise. The test process reaches the hosts by
creating its sockets inside a namespace (``setns``), so a client's requests enter the bed where
a visitor's would, through the front network.

Redis runs with access control, as the demo's and the single-host suite's do: every process
gets the URL of its own user (``PlatformConfig.child_environment(name)``), the replicas
authenticate as ``replica`` and the sentinels as ``sentinel`` (scripts/sentinels.py). Readers
(proxies, nodes) are given the route-table public key as a reader on another machine is
(``ROUTES_TRUSTED_KEYS``); the publishers find the private key in the shared ``VAR_DIR``. The
proxies' admin ports listen beyond loopback, so they require a bearer token.

Faults are what an operator meets: a process killed (``kill``), a host's link down
(``link``), loss (and, where the kernel has ``sch_netem``, latency) on a host's Redis link.
``Bed.destroy`` (also run at start, for a bed left by an interrupted run) kills every process
in the bed's namespaces and deletes them, and their veths with them.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import http.client
import json
import os
import secrets
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from routing.keys import TRUSTED_KEYS_ENV, load_or_create_signing_key
from routing.signing import public_key_text
from scripts import redis_users
from scripts.platform import REPO_ROOT, NodeSpec, PlatformConfig, process_table
from scripts.sentinels import (
    MASTER_NAME,
    Access,
    Instance,
    redis_argv,
    sentinel_argv,
    sentinel_conf,
    sentinel_url,
)
from tests.support import wait_until
from webapps.node.control import call

PREFIX = "hbed-"  # every namespace of the bed; nothing else on the machine uses it
SWITCH = PREFIX + "sw"
NETS = {"front": "10.231.0", "back": "10.231.1", "redis": "10.231.2"}
# host -> (last octet, networks it is on)
HOSTS: dict[str, tuple[int, tuple[str, ...]]] = {
    "client": (100, ("front",)),
    "p1": (11, ("front", "back", "redis")),
    "p2": (12, ("front", "back", "redis")),
    "b1": (21, ("back", "redis")),
    "b2": (22, ("back", "redis")),
    "b3": (23, ("back", "redis")),
    "ctl": (30, ("back", "redis")),
    "r1": (41, ("redis",)),
    "r2": (42, ("redis",)),
    "r3": (43, ("redis",)),
}
PROXIES = ("p1", "p2")
NODES = ("b1", "b2", "b3")
# Each fleet member has a Redis user of its own (scripts.redis_users.member_user).
MEMBERS = (*(("node", n) for n in NODES), *(("proxy", p) for p in PROXIES))
REDIS_HOSTS = ("r1", "r2", "r3")
PROXY_PORT, PROXY_TLS_PORT, PROXY_ADMIN_PORT, NODE_PORT = 8080, 8443, 8081, 9001
REDIS_PORT, SENTINEL_PORT = 6379, 26379
PROXY_WORKERS = 2
# A master silent this long is down. Shorter than the demo's: Celery's worker retries its
# broker after 2 s, then 4 s more, and a promotion that comes before its second try lets it
# reconnect at once (the first try fails as the master dies).
SENTINEL_DOWN_AFTER_MS = 500
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL("libc.so.6", use_errno=True)


def address(host: str, net: str) -> str:
    octet, nets = HOSTS[host]
    if net not in nets:
        raise ValueError(f"host {host} is not on the {net} network")
    return f"{NETS[net]}.{octet}"


def sh(*argv: str, check: bool = True, timeout: float = 20.0) -> subprocess.CompletedProcess:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {result.stderr.strip()}")
    return result


def ns(host: str) -> str:
    return PREFIX + host


@contextlib.contextmanager
def inside(host: str) -> Iterator[None]:
    """Run the block's socket creation in ``host``'s network namespace (this thread only)."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{ns(host)}", os.O_RDONLY)
    try:
        if _libc.setns(target, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns into {ns(host)}")
        try:
            yield
        finally:
            if _libc.setns(own, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back")
    finally:
        os.close(target)
        os.close(own)


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self):
        return json.loads(self.body)


def request(
    host: str,
    ip: str,
    port: int,
    method: str,
    path: str,
    *,
    vhost: str,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    timeout: float = 10.0,
) -> Reply:
    """One request from ``host``'s namespace to ``ip:port`` with the Host header ``vhost``."""
    with inside(host):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        conn = http.client.HTTPConnection(ip, port, timeout=timeout)
    except BaseException:
        sock.close()
        raise
    try:
        sock.settimeout(timeout)
        sock.connect((ip, port))
        conn.sock = sock
        conn.request(method, path, body=body, headers={"Host": vhost, **(headers or {})})
        raw = conn.getresponse()
        return Reply(raw.status, {k.lower(): v for k, v in raw.getheaders()}, raw.read())
    finally:
        conn.close()
        sock.close()


def netem_available() -> bool:
    """Whether this kernel can delay packets (``tc qdisc ... netem``): tried on a scratch
    namespace's loopback."""
    probe = PREFIX + "probe"
    sh("ip", "netns", "add", probe, check=False)
    try:
        sh("ip", "-n", probe, "link", "set", "lo", "up")
        return sh("ip", "netns", "exec", probe, "tc", "qdisc", "add", "dev", "lo", "root",
                  "netem", "delay", "1ms", check=False).returncode == 0  # fmt: skip
    finally:
        sh("ip", "netns", "del", probe, check=False)


@dataclass
class Bed:
    var_dir: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    config: PlatformConfig | None = None
    # The proxies' admin port token (they listen on their host's address, not loopback).
    admin_token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    # The group's ACL file and the replica's and sentinels' passwords (``start_redis_group``).
    access: Access | None = None

    # --- the network ---------------------------------------------------------------------
    @staticmethod
    def destroy() -> None:
        """Remove every namespace of a bed (ours or an interrupted run's) and its processes."""
        listed = sh("ip", "netns", "list", check=False).stdout.split("\n")
        names = [line.split()[0] for line in listed if line.startswith(PREFIX)]
        for name in names:
            pids = sh("ip", "netns", "pids", name, check=False).stdout.split()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
        for name in names:
            sh("ip", "netns", "del", name, check=False)

    def build_network(self) -> None:
        sh("ip", "netns", "add", SWITCH)
        sh("ip", "-n", SWITCH, "link", "set", "lo", "up")
        for net in NETS:
            sh("ip", "-n", SWITCH, "link", "add", f"br-{net}", "type", "bridge")
            sh("ip", "-n", SWITCH, "link", "set", f"br-{net}", "up")
        for host, (_, nets) in HOSTS.items():
            sh("ip", "netns", "add", ns(host))
            sh("ip", "-n", ns(host), "link", "set", "lo", "up")
            for net in nets:
                port = f"{net[0]}-{host}"  # the switch's end, e.g. f-p1
                sh("ip", "-n", SWITCH, "link", "add", port, "type", "veth", "peer", "name",
                   f"{net}0", "netns", ns(host))  # fmt: skip
                sh("ip", "-n", SWITCH, "link", "set", port, "master", f"br-{net}", "up")
                sh("ip", "-n", ns(host), "addr", "add", f"{address(host, net)}/24", "dev",
                   f"{net}0")  # fmt: skip
                sh("ip", "-n", ns(host), "link", "set", f"{net}0", "up")

    def link(self, host: str, net: str, up: bool) -> None:
        """Take ``host``'s link to ``net`` down (as a pulled cable: its routes go) or up."""
        sh("ip", "-n", ns(host), "link", "set", f"{net}0", "up" if up else "down")

    def lossy(self, host: str, net: str, *, loss_percent: int, delay_ms: int) -> list[str]:
        """Drop ``loss_percent`` of the packets both ways on ``host``'s ``net`` link (nftables),
        and delay them ``delay_ms`` when the kernel has netem; returns what was applied."""
        dev = f"{net}0"
        rules = f"""table inet bedloss {{
    chain out {{
        type filter hook output priority 0;
        oifname "{dev}" numgen random mod 100 < {loss_percent} drop
    }}
    chain in {{
        type filter hook input priority 0;
        iifname "{dev}" numgen random mod 100 < {loss_percent} drop
    }}
}}
"""
        subprocess.run(["ip", "netns", "exec", ns(host), "nft", "-f", "-"], input=rules,
                       text=True, check=True, capture_output=True, timeout=20)  # fmt: skip
        applied = [f"{loss_percent}% loss"]
        if delay_ms and netem_available():
            sh("ip", "netns", "exec", ns(host), "tc", "qdisc", "add", "dev", dev, "root",
               "netem", "delay", f"{delay_ms}ms")  # fmt: skip
            applied.append(f"{delay_ms} ms delay")
        return applied

    def clear_lossy(self, host: str, net: str) -> None:
        sh("ip", "netns", "exec", ns(host), "nft", "delete", "table", "inet", "bedloss",
           check=False)  # fmt: skip
        sh("ip", "netns", "exec", ns(host), "tc", "qdisc", "del", "dev", f"{net}0", "root",
           check=False)  # fmt: skip

    # --- processes -----------------------------------------------------------------------
    @property
    def log_dir(self) -> Path:
        return self.var_dir / "process-logs"

    def spawn(self, name: str, host: str, argv: list[str], env: dict[str, str],
              cwd: Path = REPO_ROOT) -> None:  # fmt: skip
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_dir / f"{name}.log", "ab") as log:
            self.processes[name] = subprocess.Popen(
                ["ip", "netns", "exec", ns(host), *argv],
                cwd=cwd,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def kill(self, name: str, sig: int = signal.SIGKILL, timeout: float = 20.0) -> None:
        process = self.processes.pop(name, None)
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout)

    def stop_all(self) -> None:
        for name in list(self.processes):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.processes[name].pid, signal.SIGTERM)
        for name in list(self.processes):
            self.kill(name, signal.SIGTERM, timeout=15)

    # --- Redis with its sentinels ----------------------------------------------------------
    def redis_instance(self, host: str) -> Instance:
        return Instance(address(host, "redis"), REDIS_PORT)

    def sentinels(self) -> list[Instance]:
        return [Instance(address(h, "redis"), SENTINEL_PORT) for h in REDIS_HOSTS]

    def start_redis(self, host: str, replica_of: Instance | None) -> None:
        assert self.access is not None, "start_redis_group first"
        data = self.var_dir / "redis" / host
        data.mkdir(parents=True, exist_ok=True)
        argv = redis_argv(self.redis_instance(host), data, replica_of=replica_of,
                          access=self.access)  # fmt: skip
        self.spawn(f"redis-{host}", host, argv, dict(os.environ), cwd=data)

    def start_redis_group(self) -> None:
        self.access = Access.write(self.var_dir, members=MEMBERS)
        master = self.redis_instance("r1")
        self.start_redis("r1", None)
        self.start_redis("r2", master)
        for host, sentinel in zip(REDIS_HOSTS, self.sentinels(), strict=True):
            conf = sentinel_conf(self.var_dir / "sentinel" / host / "sentinel.conf", sentinel,
                                 master, protected_mode=False,
                                 access=self.access,
                                 down_after_ms=SENTINEL_DOWN_AFTER_MS)  # fmt: skip
            self.spawn(f"sentinel-{host}", host, sentinel_argv(conf), dict(os.environ),
                       cwd=conf.parent)  # fmt: skip
        wait_until(self.redis_settled, 30, interval=0.2, what="sentinels agree on the group")

    def sentinel_query(self, *command: str) -> object:
        """A command to the first sentinel that answers, from the control host."""
        import redis

        last: Exception | None = None
        for sentinel in self.sentinels():
            with inside("ctl"):
                client = redis.Redis(
                    sentinel.host,
                    sentinel.port,
                    socket_timeout=1,
                    socket_connect_timeout=1,
                    decode_responses=True,
                )
                try:
                    return client.execute_command(*command)
                except redis.RedisError as exc:
                    last = exc
                finally:
                    client.close()
        raise RuntimeError(f"no sentinel answers: {last!r}")

    def master(self) -> Instance:
        host, port = self.sentinel_query("SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME)
        return Instance(host, int(port))

    def master_host(self) -> str:
        ip = self.master().host
        return next(h for h in REDIS_HOSTS if address(h, "redis") == ip)

    def redis_settled(self) -> bool:
        """Every sentinel knows a master, a live replica and its two peers."""
        import redis

        masters = set()
        for sentinel in self.sentinels():
            with inside("ctl"):
                client = redis.Redis(sentinel.host, sentinel.port, socket_timeout=1,
                                     decode_responses=True)  # fmt: skip
                try:
                    state = client.sentinel_master(MASTER_NAME)
                    replicas = client.sentinel_slaves(MASTER_NAME)
                except redis.RedisError:
                    return False
                finally:
                    client.close()
            live = [r for r in replicas if not (r["is_sdown"] or r["is_odown"])]
            if state["num-other-sentinels"] < 2 or not live or state["is_sdown"]:
                return False
            masters.add((state["ip"], int(state["port"])))
        return len(masters) == 1

    @property
    def redis_url(self) -> str:
        """The group's URL without a user (the sentinels take none); with a role's user:
        ``self.config.redis_url_for(role)``."""
        return sentinel_url(self.sentinels())

    # --- the platform --------------------------------------------------------------------
    def platform_config(self) -> PlatformConfig:
        passwords = redis_users.ensure_passwords(self.var_dir, MEMBERS)
        return PlatformConfig(
            var_dir=self.var_dir,
            redis_url=self.redis_url,
            redis_urls=redis_users.urls(self.redis_url, passwords),
            database_url=f"sqlite:///{self.var_dir / 'db.sqlite3'}",
            nodes=tuple(NodeSpec(n, NODE_PORT) for n in NODES),
            republish_seconds=2,
        )

    def environment(self, config: PlatformConfig, name: str, host: str) -> dict[str, str]:
        """Process ``name`` of the table's environment (its own Redis user), on ``host``."""
        env = config.child_environment(name)
        if name == "proxy" or name.startswith("node-"):
            # A reader on its own host: given the public key, as across machines.
            public = load_or_create_signing_key(self.var_dir).public_key()
            env[TRUSTED_KEYS_ENV] = public_key_text(public)
        if name == "proxy":
            env.update({
                # Short enough that a lost host is skipped within the 2 s.
                "PROXY_CONNECT_TIMEOUT": "0.5",
                "PROXY_DOWN_SECONDS": "2",
                "PROXY_FAIL_THRESHOLD": "2",
                "PROXY_WORKERS": str(PROXY_WORKERS),
                "PROXY_NAME": host,
                # Its own fleet member's user, which may write its heartbeat.
                "PROXY_REDIS_URL": config.member_url("proxy", host),
                "PROXY_ADMIN_TOKEN": self.admin_token,
            })  # fmt: skip
        return env

    def start_platform(self) -> None:
        base = self.config = self.platform_config()
        ctl = dataclasses.replace(base, host=address("ctl", "back"))
        for name in ("worker", "beat"):
            self.spawn(name, "ctl", process_table(ctl)[name], self.environment(ctl, name, "ctl"))
        for node in NODES:
            config = dataclasses.replace(
                base, host=address(node, "back"), nodes=(NodeSpec(node, NODE_PORT),)
            )
            argv = process_table(config)[f"node-{node}"]
            self.spawn(f"node-{node}", node, argv, self.environment(config, f"node-{node}", node))
        for proxy in PROXIES:
            config = dataclasses.replace(
                base,
                host=address(proxy, "front"),
                proxy_port=PROXY_PORT,
                proxy_tls_port=PROXY_TLS_PORT,
                proxy_admin_port=PROXY_ADMIN_PORT,
            )
            argv = list(process_table(config)["proxy"])
            # Each proxy host keeps its own last good table.
            argv[argv.index("--state-file") + 1] = str(self.var_dir / f"{proxy}-routes.json")
            self.spawn(f"proxy-{proxy}", proxy, argv, self.environment(config, "proxy", proxy))

    def run_python(self, code: str, host: str = "ctl", timeout: float = 120.0) -> str:
        """Python with Django set up, on ``host`` (default the control host); its stdout."""
        assert self.config is not None
        argv = ["ip", "netns", "exec", ns(host), self.config.python, "-c",
                "import django\ndjango.setup()\n" + code]  # fmt: skip
        result = subprocess.run(argv, cwd=REPO_ROOT, env=self.config.child_environment(),
                                capture_output=True, text=True, timeout=timeout)  # fmt: skip
        if result.returncode != 0:
            raise RuntimeError(f"script failed:\n{result.stdout}\n{result.stderr}")
        return result.stdout

    def manage(self, *args: str, timeout: float = 180.0) -> str:
        assert self.config is not None
        result = subprocess.run(
            ["ip", "netns", "exec", ns("ctl"), self.config.python, "manage.py", *args],
            cwd=REPO_ROOT, env=self.config.child_environment(), capture_output=True, text=True,
            timeout=timeout,
        )  # fmt: skip
        if result.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stderr}")
        return result.stdout

    # --- looking at the proxies ------------------------------------------------------------
    def via(self, proxy: str, method: str, path: str, *, vhost: str, **kwargs) -> Reply:
        return request("client", address(proxy, "front"), PROXY_PORT, method, path, vhost=vhost,
                    **kwargs)  # fmt: skip

    def proxy_admin(self, proxy: str, path: str) -> Reply:
        """GET ``path`` on ``proxy``'s admin port (one of its workers answers), with the token."""
        return request("client", address(proxy, "front"), PROXY_ADMIN_PORT, "GET", path,
                       vhost="admin", timeout=3,
                       headers={"Authorization": f"Bearer {self.admin_token}"})  # fmt: skip

    def proxy_versions(self, proxy: str) -> list[int]:
        """The table version each worker of ``proxy`` holds, from its /metrics (every worker
        answers for itself; several reads reach them all)."""
        seen: dict[str, int] = {}
        for _ in range(PROXY_WORKERS * 4):
            reply = self.proxy_admin(proxy, "/metrics")
            for line in reply.body.decode().splitlines():
                if line.startswith(("proxy_route_table_version{", "proxy_route_table_version ")):
                    labels, value = line.rsplit(" ", 1)
                    seen[labels] = int(float(value))
        return list(seen.values())

    def routes(self, proxy: str, domain: str) -> set[str]:
        """The backends the workers of ``proxy`` would send ``domain`` to now (its /route:
        the table's ranking with the backends passive health holds down put last)."""
        chosen = set()
        for _ in range(PROXY_WORKERS * 3):
            reply = self.proxy_admin(proxy, f"/route?host={domain}")
            chosen.add(reply.json()["backend"])
        return chosen

    def proxy_version(self, proxy: str) -> int | None:
        versions = self.proxy_versions(proxy)
        return min(versions) if versions else None

    def refused(self, proxy: str, reason: str) -> int:
        """Tables ``proxy``'s workers have refused for ``reason``, summed over the workers seen
        (every read reaches one worker, several reads reach them all)."""
        seen: dict[str, int] = {}
        for _ in range(PROXY_WORKERS * 4):
            for line in self.proxy_admin(proxy, "/metrics").body.decode().splitlines():
                if line.startswith("proxy_route_tables_refused_total{") and (
                    f'reason="{reason}"' in line
                ):
                    labels, value = line.rsplit(" ", 1)
                    seen[labels] = int(float(value))
        return sum(seen.values())

    def node_version(self, node: str) -> int | None:
        """The route table version node ``node`` follows, from its control socket's status (a
        file on the shared file system: the socket is reached from any namespace)."""
        path = self.var_dir / "run" / node / "control.sock"
        return call(path, {"op": "status"}, timeout=5)["routes"]["version"]


class Load:
    """Idempotent traffic (GETs) for known domains through one proxy, from the client host,
    until stopped: what was sent, what failed, and which backend served each domain when."""

    def __init__(self, bed: Bed, proxy: str, domains: list[str], threads: int = 2) -> None:
        self.bed, self.proxy, self.domains = bed, proxy, domains
        self.sent = 0
        self.failed: list[tuple[float, str, str]] = []
        self.served: dict[str, list[tuple[float, str]]] = {d: [] for d in domains}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                         for i in range(threads)]  # fmt: skip

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def _run(self, index: int) -> None:
        i = index
        while not self._stop.is_set():
            domain = self.domains[i % len(self.domains)]
            i += 1
            try:
                reply = self.bed.via(self.proxy, "GET", "/", vhost=domain, timeout=10)
                problem = "" if reply.status == 200 else f"HTTP {reply.status}"
                backend = reply.headers.get("x-backend", "")
            except OSError as exc:
                problem, backend = repr(exc), ""
            with self._lock:
                self.sent += 1
                now = time.monotonic()
                if problem:
                    self.failed.append((now, domain, problem))
                else:
                    self.served[domain].append((now, backend))

    def figures(self) -> str:
        return f"{self.proxy}: {self.sent} requests sent, {len(self.failed)} failed"


CHANGER = """
import sys
from panel.accounts.origin import Origin
from routing.pool.actions import do_set_weight, do_update_backend
from routing.pool.tables import committed_table
print("ready", flush=True)
for line in sys.stdin:
    verb, name, value = line.rstrip("\\n").split(" ", 2)
    origin = Origin(via="cli")
    if verb == "weight":
        do_set_weight(name, int(value), actor=None, origin=origin)
    else:
        do_update_backend(name, notes=value, actor=None, origin=origin)
    print(committed_table().version, flush=True)
"""


class PoolChanger:
    """A Django process on the control host, started ahead, that commits a pool change (a
    backend's weight, or its notes: a new version that moves no app) the moment it is asked and
    answers the new version: a change made "now", not after a Python start-up."""

    def __init__(self, bed: Bed) -> None:
        assert bed.config is not None
        argv = ["ip", "netns", "exec", ns("ctl"), bed.config.python, "-c",
                "import django\ndjango.setup()\n" + CHANGER]  # fmt: skip
        self.process = subprocess.Popen(
            argv, cwd=REPO_ROOT, env=bed.config.child_environment(), stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        assert self._line() == "ready"

    def _line(self, timeout: float = 60.0) -> str:
        assert self.process.stdout is not None
        result: list[str] = []
        reader = threading.Thread(target=lambda: result.append(self.process.stdout.readline()))
        reader.start()
        reader.join(timeout)
        if not result or not result[0]:
            raise RuntimeError("the pool changer did not answer")
        return result[0].strip()

    def _change(self, verb: str, name: str, value: str) -> int:
        assert self.process.stdin is not None
        self.process.stdin.write(f"{verb} {name} {value}\n")
        self.process.stdin.flush()
        return int(self._line())

    def set_weight(self, name: str, weight: int) -> int:
        return self._change("weight", name, str(weight))

    def set_notes(self, name: str, notes: str) -> int:
        return self._change("notes", name, notes.replace("\n", " "))

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        if self.process.stdout is not None:
            self.process.stdout.close()


def stored_table(bed: Bed):
    """The route table the Redis master holds (its signature verified), read from the control
    host as a reader does."""
    from routing.connect import sync_client
    from routing.keys import trusted_keys_from
    from routing.publish import signature_key, table_key
    from routing.signing import verified_table

    assert bed.config is not None
    with inside("ctl"):
        client = sync_client(bed.config.redis_url_for("reader"), timeout=2)
        try:
            raw, line = client.mget([table_key(), signature_key()])
        finally:
            client.close()
    return verified_table(raw, line, trusted_keys_from(bed.var_dir, None))[0]


@contextlib.contextmanager
def admin_client(bed: Bed) -> Iterator[object]:
    """A client of the Redis master as the operator's ``admin`` user, from the control host
    (its sockets are made there when first used, so commands go inside ``inside``)."""
    from routing.connect import sync_client

    assert bed.config is not None
    client = sync_client(bed.config.redis_url_for("admin"), timeout=2)
    try:
        yield client
    finally:
        client.close()
