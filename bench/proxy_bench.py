"""Benchmark: our front proxy (one worker) against nginx (one worker) and a minimal aiohttp
proxy, in the same run, in interleaved rounds, on loopback.

    .venv/bin/python bench/proxy_bench.py [--rounds 5] [--duration 5] [--memory-only]
        [--baseline DIR]

Installs nginx and wrk from Debian packages when missing (apt-get). One cheap origin (nginx,
one worker, static answers) serves all three peers. For small responses (keep-alive, 128
connections) and 1 MiB responses (16 connections) it prints req/s, p50/p99 latency and the
proxy's CPU microseconds per request (utime+stime from /proc, all of the peer's processes),
each as the median over rounds, with ratios to nginx (the median of each round's ratio: a
round's peers ran back to back, under the most similar load). nginx keeps 256 idle upstream
connections (more than the client concurrency) so it does not churn connections.

``--baseline DIR`` adds a fourth peer, the front proxy of another checkout (say, the commit
before a change), measured in the same rounds: on a shared machine that is the fairest before
and after, and the report adds "ours vs baseline".

Then the memory check: RSS of our proxy holding 10,000 idle keep-alive client connections.
Bounded: about (rounds x 3 peers, 4 with --baseline, x 2 sizes x duration) seconds plus setup.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
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

from tests.support import RedisServer, free_port, port_open, wait_until  # noqa: E402

HOST = "app.bench"
SMALL = "/small"
BIG = "/big"
CONCURRENCY = {"small": 128, "1MiB": 16}
TICKS = os.sysconf("SC_CLK_TCK")


def ensure_tools() -> None:
    missing = [p for p, b in (("nginx-light", "nginx"), ("wrk", "wrk")) if not _which(b)]
    if not missing:
        return
    print(f"installing {' '.join(missing)} with apt-get ...", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, timeout=300)
    subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True, env=env,
                   timeout=600)  # fmt: skip


def _which(binary: str) -> str | None:
    return shutil.which(binary) or shutil.which(binary, path="/usr/sbin:/usr/bin")


def raise_nofile(target: int = 65536) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(target, hard) if hard != resource.RLIM_INFINITY else target
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class Proc:
    """A started peer: its process group, and the pids whose CPU we count."""

    def __init__(self, name: str, popen: subprocess.Popen, port: int) -> None:
        self.name = name
        self.popen = popen
        self.port = port

    def pids(self) -> list[int]:
        # nginx forks its worker; count the whole process group (master + worker).
        out = subprocess.run(["pgrep", "-g", str(self.popen.pid)], capture_output=True,
                             text=True).stdout  # fmt: skip
        return [int(p) for p in out.split()] or [self.popen.pid]

    def cpu_seconds(self) -> float:
        total = 0
        for pid in self.pids():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except FileNotFoundError:
                continue
            total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / TICKS

    def stop(self) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(5)


def start(name: str, cmd: list[str], port: int, env: dict | None = None) -> Proc:
    popen = subprocess.Popen(cmd, start_new_session=True, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)  # fmt: skip
    wait_until(lambda: port_open("127.0.0.1", port), 20, what=f"{name} on {port}")
    return Proc(name, popen, port)


def nginx_conf(work: Path, name: str, body: str, main: str = "") -> Path:
    """An nginx configuration file: one worker, no access log; ``body`` goes in ``http``,
    ``main`` (say, a ``user`` line) at the top level."""
    conf = work / f"{name}.conf"
    conf.write_text(
        f"""
{main}
worker_processes 1;
daemon off;
pid {work}/{name}.pid;
error_log {work}/{name}.error.log warn;
events {{ worker_connections 20000; }}
http {{
    access_log off;
    client_body_temp_path {work}/{name}-body;
    proxy_temp_path {work}/{name}-proxy;
    fastcgi_temp_path {work}/{name}-fcgi;
    uwsgi_temp_path {work}/{name}-uwsgi;
    scgi_temp_path {work}/{name}-scgi;
    keepalive_requests 1000000;
    {body}
}}
"""
    )
    return conf


def start_origin(work: Path) -> Proc:
    port = free_port()
    (work / "www").mkdir(exist_ok=True)
    (work / "www" / "big").write_bytes(b"x" * (1024 * 1024))
    conf = nginx_conf(work, "origin", f"""
    server {{
        listen 127.0.0.1:{port} reuseport backlog=4096;
        location = {SMALL} {{ return 200 "hello, world\\n"; }}
        location = {BIG} {{ root {work}/www; try_files /big =404; }}
    }}""")  # fmt: skip
    return start("origin", [_which("nginx"), "-c", str(conf), "-p", str(work)], port)


def start_nginx_proxy(work: Path, origin: int) -> Proc:
    port = free_port()
    conf = nginx_conf(work, "nginx", f"""
    upstream origin {{ server 127.0.0.1:{origin}; keepalive 256; keepalive_requests 1000000; }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_buffering on;
        }}
    }}""")  # fmt: skip
    return start("nginx", [_which("nginx"), "-c", str(conf), "-p", str(work)], port)


def start_our_proxy(
    work: Path, origin: int, redis: RedisServer, root: Path = ROOT, name: str = "ours"
) -> Proc:
    from routing import Backend, RouteTable

    table = RouteTable(1, "rendezvous-xxh3-v1", (Backend("origin", f"127.0.0.1:{origin}"),))
    import redis as redis_py

    from routing.keys import load_or_create_signing_key
    from routing.publish import publish_table

    # Signed with a pair of the run's own; the proxy is told to trust its public key.
    key = load_or_create_signing_key(work / "var")
    client = redis_py.Redis.from_url(redis.url)
    publish_table(client, table, "bench:", signing_key=key)
    client.close()
    port, admin = free_port(), free_port()
    cmd = [sys.executable, "-m", "proxy", "--listen", f"127.0.0.1:{port}",
           "--admin-listen", f"127.0.0.1:{admin}", "--redis", redis.url,
           "--redis-prefix", "bench:", "--state-file", str(work / f"routes-{name}.json"),
           "--log-level", "WARNING"]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=str(root), VAR_DIR=str(work / "var"))
    proc = start(name, cmd, port, env)

    def ready() -> bool:
        with socket.create_connection(("127.0.0.1", admin), timeout=2) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n")
            return s.recv(100).startswith(b"HTTP/1.1 200")

    wait_until(ready, 20, what=f"{name} proxy ready")
    return proc


AIOHTTP_PEER = """
import sys
from aiohttp import ClientSession, TCPConnector, web

ORIGIN = sys.argv[2]

async def handler(request):
    async with request.app["session"].request(
        request.method, ORIGIN + request.rel_url.path_qs, headers={"Host": request.host},
        data=await request.read(),
    ) as resp:
        body = await resp.read()
        return web.Response(body=body, status=resp.status,
                            headers={"Content-Type": resp.headers.get("Content-Type", "")})

async def session(app):
    app["session"] = ClientSession(connector=TCPConnector(limit=0, limit_per_host=0))
    yield
    await app["session"].close()

app = web.Application()
app.cleanup_ctx.append(session)
app.router.add_route("*", "/{tail:.*}", handler)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
"""


def start_aiohttp(work: Path, origin: int) -> Proc:
    port = free_port()
    script = work / "aiohttp_peer.py"
    script.write_text(AIOHTTP_PEER)
    return start("aiohttp", [sys.executable, str(script), str(port),
                             f"http://127.0.0.1:{origin}"], port)  # fmt: skip


def wrk(port: int, path: str, connections: int, duration: float) -> dict:
    cmd = [_which("wrk"), "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s", "--latency",
           "-H", f"Host: {HOST}", f"http://127.0.0.1:{port}{path}"]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 30).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock_err = re.search(r"Socket errors: (.*)", out)
    lat = dict(re.findall(r"\s+(50|99)%\s+([\d.]+\w+)", out))
    return {
        "rps": rps,
        "requests": total,
        "p50": _ms(lat.get("50", "nan")),
        "p99": _ms(lat.get("99", "nan")),
        "errors": int(errors.group(1)) if errors else 0,
        "socket_errors": sock_err.group(1) if sock_err else "",
    }


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if not m:
        return float("nan")
    value, unit = float(m.group(1)), m.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


def measure(proc: Proc, path: str, connections: int, duration: float) -> dict:
    wrk(proc.port, path, connections, 1.0)  # warm-up: pools, caches
    before = proc.cpu_seconds()
    result = wrk(proc.port, path, connections, duration)
    used = proc.cpu_seconds() - before
    result["cpu_us"] = used * 1e6 / max(result["requests"], 1)
    return result


def run_benchmark(rounds: int, duration: float, baseline: Path | None = None) -> None:
    with tempfile.TemporaryDirectory(prefix="proxy-bench-") as tmp:
        work = Path(tmp)
        work.chmod(0o755)  # nginx workers run as an unprivileged user
        redis = RedisServer().start()
        procs: list[Proc] = []
        try:
            origin = start_origin(work)
            procs.append(origin)
            peers = [
                start_our_proxy(work, origin.port, redis),
                start_nginx_proxy(work, origin.port),
                start_aiohttp(work, origin.port),
            ]
            if baseline is not None:
                peers.append(start_our_proxy(work, origin.port, redis, baseline, "baseline"))
            procs += peers
            results: dict[tuple[str, str], list[dict]] = {}
            load_before = os.getloadavg()[0]
            for r in range(rounds):
                for size, path in (("small", SMALL), ("1MiB", BIG)):
                    order = peers if r % 2 == 0 else list(reversed(peers))
                    for peer in order:
                        res = measure(peer, path, CONCURRENCY[size], duration)
                        results.setdefault((size, peer.name), []).append(res)
                        print(f"round {r + 1} {size:5} {peer.name:8} {res['rps']:10.0f} req/s "
                              f"p50 {res['p50']:7.2f} ms p99 {res['p99']:7.2f} ms "
                              f"cpu {res['cpu_us']:7.1f} us/req errors {res['errors']} "
                              f"{res['socket_errors']}", flush=True)  # fmt: skip
            report(results, [p.name for p in peers], rounds, duration)
            print(f"load average (1 min): {load_before:.1f} before, {os.getloadavg()[0]:.1f} "
                  "after (other processes on this machine share its CPUs)")  # fmt: skip
        finally:
            for p in reversed(procs):
                p.stop()
            redis.cleanup()


def report(results: dict, names: list[str], rounds: int, duration: float) -> None:
    """Medians over rounds; each ratio is the median of the per-round ratios (a peer against
    nginx in the same round, which the machine's load changed least between)."""
    cpus = os.cpu_count()
    print(
        f"\n== medians of {rounds} interleaved rounds, {duration:g} s each, {cpus} CPUs, "
        "wrk 1 thread; origin: nginx 1 worker; ratios: medians of per-round ratios =="
    )
    keys = ("rps", "p50", "p99", "cpu_us")
    for size in ("small", "1MiB"):
        print(f"\n{size} responses, {CONCURRENCY[size]} keep-alive connections")
        print(f"{'peer':9} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'CPU us/req':>11} "
              f"{'req/s vs nginx':>15} {'p99 vs nginx':>13} {'CPU vs nginx':>13}")  # fmt: skip
        base = results[(size, "nginx")]
        ratio = {
            n: {
                k: statistics.median(
                    r[k] / b[k] for r, b in zip(results[(size, n)], base, strict=True)
                )
                for k in keys
            }
            for n in names
        }
        for n in names:
            m = {k: statistics.median(r[k] for r in results[(size, n)]) for k in keys}
            q = ratio[n]
            print(f"{n:9} {m['rps']:9.0f} {m['p50']:8.2f} {m['p99']:8.2f} {m['cpu_us']:11.1f} "
                  f"{q['rps']:14.2f}x {q['p99']:12.2f}x {q['cpu_us']:12.2f}x")  # fmt: skip
        ours_vs_aiohttp = statistics.median(
            o["rps"] / a["rps"]
            for o, a in zip(results[(size, "ours")], results[(size, "aiohttp")], strict=True)
        )
        print(f"ours vs aiohttp: {ours_vs_aiohttp:.2f}x req/s")
        if "baseline" in names:
            pairs = list(zip(results[(size, "ours")], results[(size, "baseline")], strict=True))
            vs = {k: statistics.median(o[k] / b[k] for o, b in pairs) for k in keys}
            print(f"ours vs baseline: {vs['rps']:.2f}x req/s, {vs['p99']:.2f}x p99, "
                  f"{vs['cpu_us']:.2f}x CPU per request")  # fmt: skip


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def run_memory(connections: int) -> None:
    limit = raise_nofile(connections * 2 + 1000)
    if limit < connections + 100:
        print(f"memory check skipped: RLIMIT_NOFILE is {limit}")
        return
    with tempfile.TemporaryDirectory(prefix="proxy-mem-") as tmp:
        work = Path(tmp)
        work.chmod(0o755)
        redis = RedisServer().start()
        origin = proxy = None
        socks: list[socket.socket] = []
        try:
            origin = start_origin(work)
            proxy = start_our_proxy(work, origin.port, redis)
            pid = proxy.popen.pid
            before = rss_kib(pid)
            request = b"GET %b HTTP/1.1\r\nHost: %b\r\n\r\n" % (SMALL.encode(), HOST.encode())
            started = time.monotonic()
            for _ in range(connections):
                s = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
                s.sendall(request)
                socks.append(s)
            answered = 0
            for s in socks:
                if s.recv(4096).startswith(b"HTTP/1.1 200"):
                    answered += 1
            after = rss_kib(pid)
            print(
                f"\n== memory: {connections} idle keep-alive connections "
                f"(opened in {time.monotonic() - started:.1f} s, {answered} answered 200) =="
            )
            print(f"our proxy RSS: {before / 1024:.1f} MiB before, {after / 1024:.1f} MiB with "
                  f"{connections} idle connections ({(after - before) / connections:.2f} KiB "
                  f"per connection); target < 100 MiB")  # fmt: skip
        finally:
            for s in socks:
                s.close()
            for p in (proxy, origin):
                if p is not None:
                    p.stop()
            redis.cleanup()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--rounds", type=int, default=5, help="interleaved rounds per peer; medians are printed"
    )
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measurement")
    parser.add_argument("--connections", type=int, default=10_000, help="for the memory check")
    parser.add_argument(
        "--memory-only", action="store_true", help="only the idle-connection memory check"
    )
    parser.add_argument("--no-memory", action="store_true", help="skip the memory check")
    parser.add_argument(
        "--baseline",
        type=Path,
        help="another checkout whose front proxy runs as a fourth peer in the same rounds",
    )
    args = parser.parse_args()
    ensure_tools()
    raise_nofile()
    if not args.memory_only:
        if args.baseline is not None and not (args.baseline / "proxy" / "__main__.py").exists():
            parser.error(f"--baseline {args.baseline}: no proxy/__main__.py there")
        run_benchmark(args.rounds, args.duration, args.baseline)
    if not args.no_memory:
        run_memory(args.connections)
    return 0


if __name__ == "__main__":
    sys.exit(main())
