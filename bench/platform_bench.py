"""Benchmark: the whole path of a visitor's request, visitor -> proxy -> node -> app, beside the
standard deployment of the same app on the same machine, nginx -> gunicorn.

    .venv/bin/python bench/platform_bench.py [--rounds 3] [--duration 4]

One WSGI app answers ``/`` with a small dynamic body (built per request) and ``/big`` with
1 MiB. Peers, driven by wrk (1 thread, 16 connections) in interleaved rounds, the order reversed
every other round:

- ``platform``: our front proxy (``python -m proxy``, one worker, following a signed route table
  in a Redis of the run's own) -> a node (``NodeServer``, apps as the node's user) -> the app's
  gunicorn, started by the node with the settings it gives every app.
- ``nginx -> gunicorn``: nginx from Debian's packages (one worker) proxying to a gunicorn with
  the same app and worker count bound to a unix socket, with gunicorn's own access log (the
  node's apps have one too); nginx sets what gunicorn's deployment guide sets.

It prints req/s, p50/p99 latency and the CPU time per request of all of each peer's processes
(the apps' included), medians over rounds, the ratios platform/nginx (medians of each round's
ratio; targets: req/s >= 0.85x, p99 <= 1.5x) and the load average. Installs nginx and wrk when
missing (bench/proxy_bench.py's helpers). Loopback only; bounded: about rounds x 2 sizes x 2
peers x (duration + 1) seconds plus ~10 s of setup.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from node_bench import nginx_in_front  # noqa: E402
from proxy_bench import HOST, Proc, ensure_tools, measure, start, start_our_proxy  # noqa: E402

from tests.support import RedisServer, free_port, wait_until  # noqa: E402

CONNECTIONS = 16
PATHS = {"small": "/", "1MiB": "/big"}
WORKERS = 2  # AppSpec's default: what the node gives an app

APP = """
import os

BIG = os.urandom(1024 * 1024)


def application(environ, start_response):
    if environ["PATH_INFO"] == "/big":
        body = BIG
    else:
        body = ("hello %s from %s" % (environ.get("REMOTE_ADDR"), os.getpid())).encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]
"""

NODE = """
import asyncio, sys
from pathlib import Path
from webapps.node.server import NodeConfig, NodeServer
from webapps.node.spec import AppSpec

work, port, host = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
home = work / "home"
spec = AppSpec(name=host, source_directory=str(home / "bench" / "site"), owner="bench",
               workers=int(sys.argv[4]))
config = NodeConfig(
    name="n1", host="127.0.0.1", port=port, run_dir=work / "run", log_dir=work / "log",
    home_root=home, panel_host="panel.bench", base_dir=Path.cwd(), idle_timeout=None,
)
server = NodeServer(config, lookup={host: spec}.get)
try:
    import uvloop
except ImportError:
    asyncio.run(server.run_until_signalled())
else:
    uvloop.run(server.run_until_signalled())
"""


class Tree(Proc):
    """A peer whose CPU is that of its processes and all their descendants (the apps')."""

    def __init__(self, name: str, port: int, *roots: Proc) -> None:
        super().__init__(name, roots[0].popen, port)
        self.roots = roots

    def pids(self) -> list[int]:
        out = subprocess.run(["ps", "-e", "-o", "pid=,ppid="], capture_output=True, text=True)
        children: dict[int, list[int]] = {}
        for line in out.stdout.splitlines():
            pid, ppid = map(int, line.split())
            children.setdefault(ppid, []).append(pid)
        found, todo = set(), [p for root in self.roots for p in root.pids()]
        while todo:
            pid = todo.pop()
            if pid not in found:
                found.add(pid)
                todo += children.get(pid, [])
        return sorted(found)


def write_site(work: Path) -> Path:
    site = work / "home" / "bench" / "site"
    site.mkdir(parents=True)
    (site / "wsgi.py").write_text(APP)
    for directory in (work, work / "home", work / "home" / "bench", site):
        directory.chmod(0o755)
    return site


def start_platform(work: Path, redis: RedisServer) -> Proc:
    port = free_port()
    script = work / "node.py"
    script.write_text(NODE)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    node = start("node", [sys.executable, str(script), str(work), str(port), HOST,
                          str(WORKERS)], port, env)  # fmt: skip
    proxy = start_our_proxy(work, node.port, redis)
    return Tree("platform", proxy.port, proxy, node)


def start_standard(work: Path, site: Path) -> Proc:
    sock = work / "std" / "app.sock"
    sock.parent.mkdir()
    sock.parent.chmod(0o755)
    gunicorn = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--workers", str(WORKERS), "--bind", f"unix:{sock}",
         "--access-logfile", str(work / "std" / "access.log"), "--error-logfile",
         str(work / "std" / "error.log"), "wsgi:application"],
        cwd=site, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    wait_until(sock.exists, 20, what="gunicorn's socket")
    sock.chmod(0o777)
    nginx = nginx_in_front(work, sock, threads=1)
    return Tree("nginx -> gunicorn", nginx.port, nginx, Proc("gunicorn", gunicorn, 0))


def run(rounds: int, duration: float) -> None:
    with tempfile.TemporaryDirectory(prefix="platform-bench-", dir="/tmp") as tmp:
        work = Path(tmp)
        site = write_site(work)
        redis = RedisServer().start()
        peers: list[Proc] = []
        try:
            peers.append(start_platform(work, redis))
            peers.append(start_standard(work, site))
            for peer in peers:  # the node starts its app on the first request
                measure(peer, "/", CONNECTIONS, 1.0)
            results: dict[tuple[str, str], list[dict]] = {}
            load_before = os.getloadavg()
            print(f"wrk: 1 thread, {CONNECTIONS} connections, {duration:g} s x {rounds} rounds; "
                  f"app: {WORKERS} sync gunicorn workers", flush=True)  # fmt: skip
            for r in range(rounds):
                for size, path in PATHS.items():
                    for peer in peers if r % 2 == 0 else reversed(peers):
                        res = measure(peer, path, CONNECTIONS, duration)
                        results.setdefault((size, peer.name), []).append(res)
                        print(f"  round {r + 1} {size:5} {peer.name:18} {res['rps']:8.0f} req/s "
                              f"p50 {res['p50']:7.2f} ms p99 {res['p99']:7.2f} ms "
                              f"cpu {res['cpu_us']:7.1f} us/req errors {res['errors']} "
                              f"{res['socket_errors']}", flush=True)  # fmt: skip
            after = os.getloadavg()
            report(results, [p.name for p in peers])
            print(f"load average (1/5/15 min): before {load_before[0]:.1f}/{load_before[1]:.1f}/"
                  f"{load_before[2]:.1f}, after {after[0]:.1f}/{after[1]:.1f}/{after[2]:.1f} "
                  f"on {os.cpu_count()} CPUs")  # fmt: skip
        finally:
            for peer in reversed(peers):
                for proc in reversed(peer.roots):
                    proc.stop()
            redis.cleanup()


def report(results: dict, names: list[str]) -> None:
    print("\n== medians over rounds; targets: platform >= 0.85x nginx's req/s, p99 <= 1.5x ==")
    print(f"{'size':6} {'peer':18} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'CPU us/req':>11}")
    for size in PATHS:
        med = {
            name: {k: statistics.median(r[k] for r in results[(size, name)])
                   for k in ("rps", "p50", "p99", "cpu_us")}
            for name in names
        }  # fmt: skip
        for name in names:
            m = med[name]
            print(f"{size:6} {name:18} {m['rps']:8.0f} {m['p50']:8.2f} {m['p99']:8.2f} "
                  f"{m['cpu_us']:11.1f}")  # fmt: skip
        # Medians of each round's ratio: a round's peers ran back to back, under the most
        # similar load.
        rounds = list(zip(results[(size, names[0])], results[(size, names[1])], strict=True))
        rps, p99, cpu = (
            statistics.median(a[k] / b[k] for a, b in rounds) for k in ("rps", "p99", "cpu_us")
        )
        print(f"{size:6} platform/nginx: req/s x{rps:.2f} ({'met' if rps >= 0.85 else 'not met'}),"
              f" p99 x{p99:.2f} ({'met' if p99 <= 1.5 else 'not met'}), "
              f"CPU x{cpu:.2f}")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="wrk runs per peer and size")
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per wrk run")
    args = parser.parse_args()
    ensure_tools()
    run(args.rounds, args.duration)
    return 0


if __name__ == "__main__":
    sys.exit(main())
