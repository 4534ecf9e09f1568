"""Benchmark: requests through a node to an app's gunicorn beside nginx in front of the same
gunicorn and beside a gunicorn reached directly, how long a reload takes until the new code
answers, and what app isolation costs.

    .venv/bin/python bench/node_bench.py [--rounds 3] [--duration 5] [--reloads 20] [--cold 8]
        [--hop-only] [--threads N]

Sets up what a node needs in a temporary directory (a migrated SQLite file, one user, one tiny
WSGI app) and starts `manage.py runnode` on a free port. Peers, driven by wrk with the same load
in interleaved rounds (the order reversed every other round):

- ``nginx -> app``: nginx from Debian's packages (installed when missing, as wrk is), one
  worker, proxying to the node's own socket of the app: the same gunicorn processes, so the two
  differ only in the hop. It sets what gunicorn's deployment guide sets (Host,
  X-Forwarded-For, X-Forwarded-Proto) and keeps upstream connections alive when the app's worker
  class does (gthread; a sync worker closes every connection).
- ``gunicorn direct``: a gunicorn with the same app, worker class and worker count that the node
  gives its apps, bound to TCP.

It prints req/s, p99 latency and the CPU time per request of the hop's own process (the node's;
nginx's master and worker; from /proc, utime+stime), medians over rounds, with the ratios
node/nginx (targets: req/s >= 0.95x, p99 <= 1.3x) and node/direct (medians of each round's
ratio), and the load average. Then
it edits the app's code and reloads it `--reloads` times over the node's control socket, timing
each from the reload request until a request through the node gets the new code, interleaved
with the peer ``raw kill -HUP``: the app's gunicorn command line as the node builds it (so the
node's gunicorn config file, with its hash-checked imports), run by hand on a copy of the code
behind a unix socket, edited the same way, sent SIGHUP and polled until a request gets the new
code. p50/p99 of both and node/HUP (target <= 1.2x; and the median of each pair's ratio, a
pair run back to back), one untimed reload of each first.
``--hop-only`` stops after the req/s rounds.

Isolation (as root, where the node can sandbox): two nodes of the same code, one running apps in
their owners' sandboxes (bubblewrap, setpriv, cgroups, egress through veth and NAT: what a plain
`runnode` does as root) and one running them as its own user, both with the same static app
lookup (no database). wrk drives both in interleaved rounds (req/s, p99); the cold start is the
first request to an app that is not running, measured on `--cold` fresh apps per node,
interleaved; the script prints on/off ratios and differences.
Loopback only; bounded: about rounds x 5 x duration seconds plus ~40 s of setup and reloads
(each poll for new code gives up after 30 s).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import operator
import os
import re
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from proxy_bench import TICKS, Proc, _which, ensure_tools, nginx_conf  # noqa: E402

from tests.support import free_port, port_open, wait_until  # noqa: E402
from tests.webapps.node.support import (  # noqa: E402
    NodeProcess,
    add_apps,
    copy_db,
    give_home,
    manage,
    migrated_template,
    platform_env,
    write_app,
)
from webapps.node.control import call  # noqa: E402
from webapps.node.spec import READY_FD_ENV, AppSpec, gunicorn_argv  # noqa: E402

DOMAIN = "bench.apps.localhost"
OWNER = "bencher"
CONNECTIONS = 16
# Between polls for the new code: old workers answer at once, and a busy loop of requests
# to them would take the CPU the new workers import with.
POLL = 0.002


def app_source(version: int) -> str:
    return f"""
        def application(environ, start_response):
            body = b"version {version}"
            start_response("200 OK", [("Content-Type", "text/plain"),
                                      ("Content-Length", str(len(body)))])
            return [body]
    """


def run_wrk(wrk: str, url: str, host: str, duration: int) -> tuple[float, float, int]:
    """(requests/s, p99 ms, requests) from one wrk run."""
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
    return rps, p99, int(re.search(r"(\d+) requests in", out).group(1))


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of ``pids`` (threads included), from /proc."""
    total = 0
    for pid in pids:
        with contextlib.suppress(FileNotFoundError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / TICKS


def nginx_in_front(workdir: Path, socket_path: Path, threads: int) -> Proc:
    """nginx (one worker) proxying to the app's unix socket, as a host puts it in front of
    gunicorn: the headers gunicorn's deployment guide sets, upstream keep-alive when the worker
    class has it. Its worker runs as root when we are root: the node's app socket is in a
    directory only the app's user (and root) may enter."""
    port = free_port()
    keep = threads > 1
    conf = nginx_conf(workdir, "nginx", f"""
    upstream app {{
        server unix:{socket_path};
        {"keepalive 32;" if keep else ""}
    }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{
            proxy_pass http://app;
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            {'proxy_http_version 1.1; proxy_set_header Connection "";' if keep else ""}
            proxy_buffering on;
        }}
    }}""", main="user root;" if os.geteuid() == 0 else "")  # fmt: skip
    popen = subprocess.Popen(
        [_which("nginx"), "-c", str(conf), "-p", str(workdir)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    wait_until(lambda: port_open("127.0.0.1", port), 20, what="nginx in front of the app")
    return Proc("nginx", popen, port)


def serve(config_file: str) -> int:
    """Run one bench node: isolated or not, with a static app lookup (``--serve``)."""
    from webapps.node import launching
    from webapps.node.server import NodeConfig, NodeServer

    cfg = json.loads(Path(config_file).read_text())
    isolated, in_force = None, ("isolation: off",)
    if cfg["isolated"]:
        isolated, in_force = launching.prepare(
            cfg["name"], apps_share_node_user=False, panel_uid=999_999, panel_gid=999_999
        )
    specs = {domain: AppSpec(**fields) for domain, fields in cfg["apps"].items()}
    config = NodeConfig(
        name=cfg["name"],
        host="127.0.0.1",
        port=cfg["port"],
        run_dir=Path(cfg["run_dir"]),
        log_dir=Path(cfg["log_dir"]),
        home_root=Path(cfg["home_root"]),
        panel_host="panel.localhost",
        base_dir=ROOT,
        idle_timeout=None,
        isolated=isolated,
        in_force=in_force,
    )
    print(f"node {cfg['name']}: {'; '.join(in_force)}", flush=True)
    asyncio.run(NodeServer(config, lookup=specs.get).run_until_signalled())
    return 0


class BenchNode:
    """A bench node process (``serve``), isolated or not."""

    def __init__(self, workdir: Path, name: str, isolated: bool, apps: dict) -> None:
        self.port = free_port()
        self.name = name
        config = workdir / f"{name}.json"
        config.write_text(json.dumps({
            "name": name, "isolated": isolated, "port": self.port, "apps": apps,
            "run_dir": str(workdir / f"r-{name}"), "log_dir": str(workdir / f"l-{name}"),
            "home_root": str(workdir / "home"),
        }))  # fmt: skip
        self.output = (workdir / f"{name}.out").open("w")
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(config)],
            stdout=self.output, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        wait_until(lambda: port_open("127.0.0.1", self.port), 30, what=f"bench node {name}")

    def get_ms(self, host: str) -> float:
        import http.client

        started = time.perf_counter()
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            conn.request("GET", "/", headers={"Host": host})
            response = conn.getresponse()
            response.read()
        finally:
            conn.close()
        if response.status != 200:
            raise RuntimeError(f"{host} on {self.name} answered {response.status}")
        return (time.perf_counter() - started) * 1000

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, 9)
            self.process.wait(10)
        self.output.close()


def isolation_cost(wrk: str, workdir: Path, source: Path, args) -> None:
    from webapps.node import sandbox

    isolation = sandbox.detect_isolation()
    if not isolation.available:
        print(f"isolation on vs off: not measured ({isolation.reason})")
        return
    uid = 1_500_001
    give_home(workdir / "home" / OWNER.lower(), uid)
    base = {"source_directory": str(source), "owner": OWNER, "uid": uid, "gid": uid}
    apps = {DOMAIN: {"name": DOMAIN, **base}}
    for i in range(args.cold):
        for side in ("on", "off"):
            name = f"cold{i}-{side}.bench"
            apps[name] = {"name": name, **base}
    nodes = {
        "on": BenchNode(workdir, "iso-on", True, apps),
        "off": BenchNode(workdir, "iso-off", False, apps),
    }
    try:
        cold: dict[str, list[float]] = {"on": [], "off": []}
        for i in range(args.cold):
            for side, node in nodes.items():
                cold[side].append(node.get_ms(f"cold{i}-{side}.bench"))
        for node in nodes.values():
            node.get_ms(DOMAIN)  # warm: the req/s runs below measure a running app
        runs: dict[str, list[tuple[float, float]]] = {"on": [], "off": []}
        for _ in range(args.rounds):
            for side, node in nodes.items():
                runs[side].append(
                    run_wrk(wrk, f"http://127.0.0.1:{node.port}/", DOMAIN, args.duration)[:2]
                )
        rps = {side: statistics.median(r for r, _ in rs) for side, rs in runs.items()}
        p99 = {side: statistics.median(p for _, p in rs) for side, rs in runs.items()}
        c50 = {side: statistics.median(v) for side, v in cold.items()}
        print(f"isolation on vs off ({args.cold} cold starts and {args.rounds} wrk rounds each):")
        for side in ("on", "off"):
            print(
                f"  isolation {side:3s} {rps[side]:9.0f} req/s   p99 {p99[side]:7.2f} ms   "
                f"cold start p50 {c50[side]:6.0f} ms (max {max(cold[side]):.0f})"
            )
        ratio = rps["on"] / rps["off"]
        print(
            f"  on/off: req/s x{ratio:.2f} (cost {1 - ratio:.1%}, "
            f"target <= 10%), cold start x{c50['on'] / c50['off']:.2f} "
            f"(+{c50['on'] - c50['off']:.0f} ms, target <= 100 ms)"
        )
    finally:
        for node in nodes.values():
            node.stop()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def unix_get(path: Path, timeout: float = 10) -> str:
    """The body of ``GET /`` over the unix socket ``path`` (HTTP/1.0: the server closes)."""
    data = b""
    with socket.socket(socket.AF_UNIX) as conn:
        conn.settimeout(timeout)
        conn.connect(str(path))
        conn.sendall(f"GET / HTTP/1.0\r\nHost: {DOMAIN}\r\n\r\n".encode())
        while len(data) < 65536 and (chunk := conn.recv(65536)):
            data += chunk
    return data.partition(b"\r\n\r\n")[2].decode()


def hup_peer(workdir: Path, spec: AppSpec) -> tuple[subprocess.Popen, Path, Path, int]:
    """The app's gunicorn as the node starts it (its command line, so the node's config file
    with its hash-checked imports), run by hand on a copy of the app's code: (process, code
    directory, socket, the read end of the pipe its workers announce readiness on, as to the
    node). The timeouts are the node's defaults; no sandbox."""
    source = write_app(workdir / "peer-home", OWNER, DOMAIN, app_source(0))
    sock = workdir / "peer.sock"
    devnull = os.open(os.devnull, os.O_WRONLY)
    ready_r, ready_w = os.pipe()
    try:
        argv = gunicorn_argv(
            spec, socket=sock, access_fd=devnull, timeout=60, graceful_timeout=13,
            python=sys.executable,
        )  # fmt: skip
        env = {"PATH": "/usr/bin:/bin", "HOME": str(source.parent), READY_FD_ENV: str(ready_w)}
        popen = subprocess.Popen(
            argv, cwd=source, env=env, pass_fds=(devnull, ready_w),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
    finally:
        os.close(devnull)
        os.close(ready_w)
    return popen, source, sock, ready_r


def read_lines(fd: int, count: int, timeout: float = 30) -> None:
    """Read ``count`` lines from ``fd`` within ``timeout`` seconds."""
    deadline, seen = time.monotonic() + timeout, 0
    while seen < count:
        if not select.select([fd], [], [], max(0, deadline - time.monotonic()))[0]:
            raise RuntimeError(f"{count - seen} of {count} workers not ready in {timeout:g} s")
        chunk = os.read(fd, 4096)
        if not chunk:
            raise RuntimeError("the peer gunicorn exited")
        seen += chunk.count(b"\n")


def reload_to_new_code(node: NodeProcess, workdir: Path, spec: AppSpec, reloads: int) -> None:
    """Time ``reloads`` edits + reloads until a request gets the new code: through the node's
    control socket, and a raw HUP of a gunicorn like the app's, interleaved (the order reversed
    every other time). One untimed reload of each first."""
    peer, peer_source, sock, ready = hup_peer(workdir, spec)
    load_before = os.getloadavg()
    reported: list[float] = []

    def until(version: int, get, started: float) -> float:
        deadline = started + 30
        while True:
            with contextlib.suppress(OSError):
                if get() == f"version {version}":
                    return (time.perf_counter() - started) * 1000
            if time.perf_counter() > deadline:
                raise RuntimeError(f"version {version} not served 30 s after its reload")
            time.sleep(POLL)

    def via_node(version: int) -> float:
        write_app(workdir / "home", OWNER, DOMAIN, app_source(version))
        started = time.perf_counter()
        answer = call(node.control_socket, {"op": "reload", "domain": DOMAIN}, timeout=60)
        assert answer["status"] == "OK", answer
        reported.append(answer["duration_ms"])
        return until(version, lambda: node.request(DOMAIN)[2], started)

    def via_hup(version: int) -> float:
        write_app(peer_source.parent.parent, OWNER, DOMAIN, app_source(version))
        started = time.perf_counter()
        os.kill(peer.pid, signal.SIGHUP)
        ms = until(version, lambda: unix_get(sock), started)
        # Untimed: the next edit must not meet a worker still importing (a half-written file
        # stops gunicorn), nor the next HUP old workers still exiting; the node's reload waits
        # for both.
        read_lines(ready, spec.workers)
        children = Path(f"/proc/{peer.pid}/task/{peer.pid}/children")
        wait_until(lambda: len(children.read_text().split()) == spec.workers, 30,
                   interval=POLL, what="the old workers of the peer gunicorn to exit")  # fmt: skip
        return ms

    try:
        read_lines(ready, spec.workers)
        latencies: dict[str, list[float]] = {"node": [], "HUP": []}
        sides = {"node": via_node, "HUP": via_hup}
        for version in range(1, reloads + 2):
            for side, reload in sides.items() if version % 2 else reversed(sides.items()):
                ms = reload(version)
                if version > 1:
                    latencies[side].append(ms)
        del reported[0]
    finally:
        peer.terminate()
        peer.wait(30)
        os.close(ready)
    p50 = {side: percentile(v, 0.5) for side, v in latencies.items()}
    p99 = {side: percentile(v, 0.99) for side, v in latencies.items()}
    print(f"reload to new code over {reloads} reloads each, interleaved:")
    print(f"  node control socket  p50 {p50['node']:5.0f} ms   p99 {p99['node']:5.0f} ms   "
          f"(node-reported duration_ms p50 {percentile(reported, 0.5):.0f})")  # fmt: skip
    print(f"  raw kill -HUP        p50 {p50['HUP']:5.0f} ms   p99 {p99['HUP']:5.0f} ms")
    r50, r99 = p50["node"] / p50["HUP"], p99["node"] / p99["HUP"]
    pairs = statistics.median(map(operator.truediv, latencies["node"], latencies["HUP"]))
    print(f"  node/HUP: p50 x{r50:.2f} ({'met' if r50 <= 1.2 else 'not met'}), p99 x{r99:.2f} "
          f"({'met' if r99 <= 1.2 else 'not met'}) (target <= 1.2); median of per-pair "
          f"ratios x{pairs:.2f}")  # fmt: skip
    print_load(load_before)


def print_load(before: tuple[float, float, float]) -> None:
    after = os.getloadavg()
    print(f"load average (1/5/15 min): before {before[0]:.1f}/{before[1]:.1f}/{before[2]:.1f}, "
          f"after {after[0]:.1f}/{after[1]:.1f}/{after[2]:.1f} on {os.cpu_count()} CPUs",
          flush=True)  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="wrk runs per target")
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    parser.add_argument("--reloads", type=int, default=20, help="reloads to time")
    parser.add_argument("--cold", type=int, default=8, help="cold starts per node to time")
    parser.add_argument("--hop-only", action="store_true", help="stop after the req/s rounds")
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="the app's threads per worker (its owner's setting; more than 1: gthread workers); "
        "default: the platform's",
    )
    parser.add_argument("--serve", metavar="CONFIG", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return serve(args.serve)
    ensure_tools()
    wrk = _which("wrk")
    workdir = Path(tempfile.mkdtemp(prefix="nb-", dir="/tmp"))
    node = peer = nginx = None
    try:
        env = platform_env(workdir, copy_db(migrated_template(workdir / "tpl"), workdir))
        source = write_app(workdir / "home", OWNER, DOMAIN, app_source(0))
        add_apps(env, {OWNER: [(DOMAIN, str(source))]})
        if args.threads:
            manage(env, "shell", "-c", "from webapps.models import WebApp; WebApp.objects.filter("
                   f"domain={DOMAIN!r}).update(threads={args.threads})")  # fmt: skip
        node = NodeProcess("bn", env, workdir, "--no-routes", "--idle-timeout", "0").start()
        assert node.request(DOMAIN)[2] == "version 0"
        spec = AppSpec(name=DOMAIN, source_directory=str(source))
        if args.threads:
            spec = AppSpec(name=DOMAIN, source_directory=str(source), threads=args.threads)
        workers = str(spec.workers)
        kind = f"gthread ({spec.threads} threads)" if spec.threads > 1 else "sync"
        threaded = ["--worker-class", "gthread", "--threads", str(spec.threads)]
        peer_port = free_port()
        peer = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--workers", workers, "--bind",
             f"127.0.0.1:{peer_port}", "--error-logfile", "/dev/null",
             *(threaded if spec.threads > 1 else []), "wsgi:application"],
            cwd=source, env={"PATH": "/usr/bin:/bin", "HOME": str(source.parent)},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        wait_until(lambda: port_open("127.0.0.1", peer_port), what="peer gunicorn")
        app_socket = next(node.run_dir.glob("apps/*/app.sock"))
        nginx = nginx_in_front(workdir, app_socket, spec.threads)

        targets = {
            "node -> app": (f"http://127.0.0.1:{node.port}/", lambda: [node.process.pid]),
            "nginx -> app": (f"http://127.0.0.1:{nginx.port}/", nginx.pids),
            "gunicorn direct": (f"http://127.0.0.1:{peer_port}/", list),
        }
        results: dict[str, list[tuple[float, float, float]]] = {name: [] for name in targets}
        load_before = os.getloadavg()
        print(f"wrk: 1 thread, {CONNECTIONS} connections, {args.duration}s x {args.rounds} "
              f"rounds, app: {workers} {kind} gunicorn workers", flush=True)  # fmt: skip
        for r in range(args.rounds):
            order = list(targets.items())
            for name, (url, pids) in order if r % 2 == 0 else reversed(order):
                run_wrk(wrk, url, DOMAIN, 1)  # warm-up
                before = cpu_seconds(pids())
                rps, p99, requests = run_wrk(wrk, url, DOMAIN, args.duration)
                cpu_us = (cpu_seconds(pids()) - before) * 1e6 / max(requests, 1)
                results[name].append((rps, p99, cpu_us))
                print(f"  round {r + 1} {name:16s} {rps:9.0f} req/s   p99 {p99:7.2f} ms   "
                      f"hop CPU {cpu_us:6.1f} us/req", flush=True)  # fmt: skip
        summary = {
            name: tuple(statistics.median(run[i] for run in runs) for i in range(3))
            for name, runs in results.items()
        }
        for name, (rps, p99, cpu_us) in summary.items():
            hop = f"   hop CPU {cpu_us:6.1f} us/req" if name != "gunicorn direct" else ""
            print(f"{name:16s} {rps:9.0f} req/s   p99 {p99:7.2f} ms{hop}")

        def ratio(i: int, peer: str) -> float:
            """The median of each round's ratio: a round's peers ran back to back, under the
            most similar load."""
            pairs = zip(results["node -> app"], results[peer], strict=True)
            return statistics.median(ours[i] / theirs[i] for ours, theirs in pairs)

        rps_ratio, p99_ratio = ratio(0, "nginx -> app"), ratio(1, "nginx -> app")
        print(
            f"node/nginx: req/s x{rps_ratio:.2f} (target >= 0.95: "
            f"{'met' if rps_ratio >= 0.95 else 'not met'}), p99 x{p99_ratio:.2f} "
            f"(target <= 1.3: {'met' if p99_ratio <= 1.3 else 'not met'}), "
            f"hop CPU x{ratio(2, 'nginx -> app'):.2f} (medians of per-round ratios)"
        )
        print(f"node/direct: req/s x{ratio(0, 'gunicorn direct'):.2f}, "
              f"p99 x{ratio(1, 'gunicorn direct'):.2f}")  # fmt: skip
        print_load(load_before)
        if args.hop_only:
            return 0

        reload_to_new_code(node, workdir, spec, args.reloads)
        isolation_cost(wrk, workdir, source, args)
    finally:
        if nginx is not None:
            nginx.stop()
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
