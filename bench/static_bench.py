"""Benchmark: a static file served by a node's static files mapping, reached through our front
proxy (the production path) and directly, beside nginx serving the same directory, in the same
run, in interleaved rounds, on loopback.

    .venv/bin/python bench/static_bench.py [--rounds 3] [--duration 5]

Installs nginx and wrk from Debian packages when missing (bench/proxy_bench.py's helpers, which
this reuses: nginx config, process handling, wrk and its parsing). Peers:

- ``proxy+node``: wrk -> ``python -m proxy`` (one worker) -> a node (``NodeServer``, uvloop)
  whose app has the mapping ``/static/`` -> the directory; the production path, two hops;
- ``node``: wrk -> the node directly, one hop;
- ``nginx``: one worker, ``sendfile on``, the same directory.

Small files (2 KiB CSS, 64 keep-alive connections) and 1 MiB (16 connections): req/s, p50/p99
latency and CPU microseconds per request (all processes of the peer), each the median over
rounds, with ratios to nginx (medians of per-round ratios). Bounded: about rounds x 3 peers x
2 sizes x (duration + 1) seconds plus a few seconds of setup.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from proxy_bench import (  # noqa: E402
    HOST,
    Proc,
    _which,
    ensure_tools,
    measure,
    nginx_conf,
    raise_nofile,
    start,
    start_our_proxy,
)

from tests.support import RedisServer, free_port  # noqa: E402

SMALL = "/static/css/site.css"
BIG = "/static/big.bin"
CONCURRENCY = {"small": 64, "1MiB": 16}

NODE_PEER = """
import asyncio, sys
from pathlib import Path
from webapps.node.server import NodeConfig, NodeServer
from webapps.node.spec import AppSpec, StaticMapping

work, port, host = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
home = work / "home"
spec = AppSpec(
    name=host, source_directory=str(home / "bench" / "site"), owner="bench",
    static=(StaticMapping("/static/", str((home / "bench" / "site" / "static").resolve())),),
)
config = NodeConfig(
    name="n1", host="127.0.0.1", port=port, run_dir=work / "run", log_dir=work / "log",
    home_root=home, panel_host="panel.bench", base_dir=Path.cwd(), idle_timeout=None,
    cache_seconds=2.0,
)
server = NodeServer(config, lookup={host: spec}.get)
try:
    import uvloop
except ImportError:
    asyncio.run(server.run_until_signalled())
else:
    uvloop.run(server.run_until_signalled())
"""


def make_site(work: Path) -> Path:
    static = work / "home" / "bench" / "site" / "static"
    (static / "css").mkdir(parents=True)
    (static / "css" / "site.css").write_text(("body { margin: 0; color: #222 }\n" * 64)[:2048])
    (static / "big.bin").write_bytes(os.urandom(1024 * 1024))
    for directory in (work, work / "home", work / "home" / "bench", static.parent, static):
        directory.chmod(0o755)  # nginx's worker runs as an unprivileged user
    return static


def start_node(work: Path) -> Proc:
    port = free_port()
    script = work / "node_peer.py"
    script.write_text(NODE_PEER)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return start("node", [sys.executable, str(script), str(work), str(port), HOST], port, env)


def start_nginx(work: Path, static: Path) -> Proc:
    port = free_port()
    conf = nginx_conf(work, "nginx", f"""
    sendfile on;
    tcp_nopush on;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location /static/ {{ alias {static}/; etag on; }}
    }}""")  # fmt: skip
    return start("nginx", [_which("nginx"), "-c", str(conf), "-p", str(work)], port)


class Pair(Proc):
    """Our production path: the proxy's CPU and the node's, counted together."""

    def __init__(self, proxy: Proc, node: Proc) -> None:
        super().__init__("proxy+node", proxy.popen, proxy.port)
        self.node = node

    def pids(self) -> list[int]:
        return super().pids() + self.node.pids()


def run(rounds: int, duration: float) -> None:
    with tempfile.TemporaryDirectory(prefix="static-bench-", dir="/tmp") as tmp:
        work = Path(tmp)
        static = make_site(work)
        redis = RedisServer().start()
        procs: list[Proc] = []
        try:
            node = start_node(work)
            procs.append(node)
            proxy = start_our_proxy(work, node.port, redis)
            procs.append(proxy)
            nginx = start_nginx(work, static)
            procs.append(nginx)
            peers = [Pair(proxy, node), node, nginx]
            results: dict[tuple[str, str], list[dict]] = {}
            load_before = os.getloadavg()
            for r in range(rounds):
                for size, path in (("small", SMALL), ("1MiB", BIG)):
                    order = peers if r % 2 == 0 else list(reversed(peers))
                    for peer in order:
                        res = measure(peer, path, CONCURRENCY[size], duration)
                        results.setdefault((size, peer.name), []).append(res)
                        print(f"round {r + 1} {size:5} {peer.name:10} {res['rps']:9.0f} req/s "
                              f"p50 {res['p50']:7.2f} ms p99 {res['p99']:7.2f} ms "
                              f"cpu {res['cpu_us']:7.1f} us/req errors {res['errors']} "
                              f"{res['socket_errors']}", flush=True)  # fmt: skip
            report(results, [p.name for p in peers], rounds, duration)
            after = os.getloadavg()
            print(f"load average (1/5/15 min): before {load_before[0]:.1f}/{load_before[1]:.1f}/"
                  f"{load_before[2]:.1f}, after {after[0]:.1f}/{after[1]:.1f}/{after[2]:.1f} "
                  f"on {os.cpu_count()} CPUs")  # fmt: skip
        finally:
            for p in reversed(procs):
                p.stop()
            redis.cleanup()


def report(results: dict, names: list[str], rounds: int, duration: float) -> None:
    print(f"\n== medians of {rounds} interleaved rounds, {duration:g} s each, wrk 1 thread; "
          "ratios: medians of per-round ratios to nginx; target: proxy+node >= 0.8x nginx "
          "req/s ==")  # fmt: skip
    keys = ("rps", "p50", "p99", "cpu_us")
    for size in ("small", "1MiB"):
        print(f"\n{size} file, {CONCURRENCY[size]} keep-alive connections")
        print(f"{'peer':11} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'CPU us/req':>11} "
              f"{'req/s vs nginx':>15} {'p99 vs nginx':>13} {'CPU vs nginx':>13}")  # fmt: skip
        base = results[(size, "nginx")]
        for n in names:
            rows = results[(size, n)]
            m = {k: statistics.median(r[k] for r in rows) for k in keys}
            q = {
                k: statistics.median(r[k] / b[k] for r, b in zip(rows, base, strict=True) if b[k])
                for k in keys
            }
            print(f"{n:11} {m['rps']:9.0f} {m['p50']:8.2f} {m['p99']:8.2f} {m['cpu_us']:11.1f} "
                  f"{q['rps']:14.2f}x {q['p99']:12.2f}x {q['cpu_us']:12.2f}x")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per peer")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measurement")
    args = parser.parse_args()
    ensure_tools()
    raise_nofile()
    run(args.rounds, args.duration)
    return 0


if __name__ == "__main__":
    sys.exit(main())
