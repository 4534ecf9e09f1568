"""Benchmark: requests through a node to an app's gunicorn vs straight to that gunicorn, and how
long a reload takes until the new code answers.

    .venv/bin/python bench/node_bench.py [--rounds 3] [--duration 5] [--reloads 20]

Sets up what a node needs in a temporary directory (a migrated SQLite file, one user, one tiny
WSGI app), starts `manage.py runnode` on a free port and, as the peer, a gunicorn with the same
app, worker class and worker count that the node gives its apps, bound to TCP. wrk (installed
from Debian packages when missing) drives both with the same load, in interleaved rounds, and
the script prints req/s and p99 latency (medians over rounds) with the node/peer ratio. Then it
edits the app's code and reloads it `--reloads` times over the node's control socket, timing
each from the reload request until a request through the node gets the new code: p50/p99.
Loopback only; bounded: about rounds x 2 x duration seconds plus ~20 s of setup and reloads.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support import free_port, port_open, wait_until  # noqa: E402
from tests.webapps.node.support import (  # noqa: E402
    NodeProcess,
    add_apps,
    copy_db,
    migrated_template,
    platform_env,
    write_app,
)
from webapps.node.control import call  # noqa: E402
from webapps.node.spec import AppSpec  # noqa: E402

DOMAIN = "bench.apps.localhost"
OWNER = "bencher"
CONNECTIONS = 16


def app_source(version: int) -> str:
    return f"""
        def application(environ, start_response):
            body = b"version {version}"
            start_response("200 OK", [("Content-Type", "text/plain"),
                                      ("Content-Length", str(len(body)))])
            return [body]
    """


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    print("installing wrk with apt-get ...", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, timeout=300)
    subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True, env=env, timeout=600)
    return shutil.which("wrk") or "wrk"


def run_wrk(wrk: str, url: str, host: str, duration: int) -> tuple[float, float]:
    """(requests/s, p99 ms) from one wrk run."""
    out = subprocess.run(
        [wrk, "-t1", f"-c{CONNECTIONS}", f"-d{duration}s", "--timeout", "10s", "--latency",
         "-H", f"Host: {host}", url],
        capture_output=True, text=True, timeout=duration + 60, check=True,
    ).stdout  # fmt: skip
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    if rps == 0:
        print(f"  wrk got no answer from {url}:\n{out}", flush=True)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)", out)
    if errors:
        print(f"  wrk reported errors against {url}: {errors.group(0)}", flush=True)
    value, unit = re.search(r"\s99%\s+([\d.]+)(us|ms|s)", out).groups()
    p99 = float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    return rps, p99


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="wrk runs per target")
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    parser.add_argument("--reloads", type=int, default=20, help="reloads to time")
    args = parser.parse_args()
    wrk = ensure_wrk()
    workdir = Path(tempfile.mkdtemp(prefix="nb-", dir="/tmp"))
    node = peer = None
    try:
        env = platform_env(workdir, copy_db(migrated_template(workdir / "tpl"), workdir))
        source = write_app(workdir / "home", OWNER, DOMAIN, app_source(0))
        add_apps(env, {OWNER: [(DOMAIN, str(source))]})
        node = NodeProcess("bn", env, workdir, "--no-routes", "--idle-timeout", "0").start()
        assert node.request(DOMAIN)[2] == "version 0"
        workers = str(AppSpec(name=DOMAIN, source_directory=str(source)).workers)
        peer_port = free_port()
        peer = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--workers", workers, "--bind",
             f"127.0.0.1:{peer_port}", "--error-logfile", "/dev/null", "wsgi:application"],
            cwd=source, env={"PATH": "/usr/bin:/bin", "HOME": str(source.parent)},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        wait_until(lambda: port_open("127.0.0.1", peer_port), what="peer gunicorn")

        targets = {
            "node -> app": f"http://127.0.0.1:{node.port}/",
            "gunicorn direct": f"http://127.0.0.1:{peer_port}/",
        }
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in targets}
        print(f"wrk: 1 thread, {CONNECTIONS} connections, {args.duration}s x {args.rounds} "
              f"rounds, app: {workers} sync gunicorn workers", flush=True)  # fmt: skip
        for _ in range(args.rounds):
            for name, url in targets.items():
                results[name].append(run_wrk(wrk, url, DOMAIN, args.duration))
        summary = {
            name: (
                statistics.median(r for r, _ in runs),
                statistics.median(p for _, p in runs),
            )
            for name, runs in results.items()
        }
        for name, (rps, p99) in summary.items():
            print(f"{name:16s} {rps:9.0f} req/s   p99 {p99:7.2f} ms")
        (n_rps, n_p99), (g_rps, g_p99) = summary["node -> app"], summary["gunicorn direct"]
        print(f"node/direct: req/s x{n_rps / g_rps:.2f}, p99 x{n_p99 / g_p99:.2f}")

        latencies, reported = [], []
        for version in range(1, args.reloads + 1):
            write_app(workdir / "home", OWNER, DOMAIN, app_source(version))
            started = time.perf_counter()
            answer = call(node.control_socket, {"op": "reload", "domain": DOMAIN}, timeout=60)
            assert answer["status"] == "OK", answer
            deadline = started + 30
            while node.request(DOMAIN)[2] != f"version {version}":
                if time.perf_counter() > deadline:
                    raise RuntimeError(f"version {version} not served 30 s after its reload")
            latencies.append((time.perf_counter() - started) * 1000)
            reported.append(answer["duration_ms"])
        print(
            f"reload to new code over {args.reloads} reloads: "
            f"p50 {percentile(latencies, 0.5):.0f} ms, p99 {percentile(latencies, 0.99):.0f} ms "
            f"(node-reported duration_ms p50 {percentile(reported, 0.5):.0f})"
        )
    finally:
        if peer is not None:
            peer.terminate()
            peer.wait(10)
        if node is not None:
            node.stop()
            node.kill_leftovers()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
