"""Benchmark: one node holding many apps, and how long a cold start takes beside gunicorn's own.

    .venv/bin/python bench/many_apps_bench.py [--apps 200] [--cap 50] [--duration 40]
                                              [--clients 8] [--cold 20]

Sets up, in a temporary directory, ``--apps`` tiny WSGI apps, each of its own owner, and starts
a node (``NodeServer`` in a process of its own, the event loop runnode uses, a static app
lookup: no database) that may run ``--cap`` of them at once, its apps as the node's own user
(``--isolated``: each in its owner's sandbox, as a node does as root).

1. **Cold start.** ``--cold`` times, interleaved (alternating which goes first): the first
   request through the node to an app that has never run (from sending it to the full answer),
   beside the peer: the same app's gunicorn run as a user would (``python -m gunicorn --workers 2
   --bind unix:... wsgi:application`` in the app's directory: the node's worker count and
   class), timed from its exec until its first answer (polled every millisecond). Prints
   p50/p99 of both and the ratio (target <= 1.3x).
2. **Many apps.** ``--clients`` threads send requests round-robin over every app (each from its
   own offset, one connection per request) for ``--duration`` seconds. With more apps than the
   cap, round-robin is LRU's worst case: nearly every request is a cold start, and the node must
   stop an idle app for each. Prints requests, errors (must be 0), cold starts per second, the
   node's RSS and each running app's (its process tree, summed) and each app process's: min,
   median, max, and the most apps that ran at once (never more than the cap).

Loopback only; bounded: about ``--duration`` + ``--cold`` x 2 s plus ~10 s of setup.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support import free_port, port_open, wait_until  # noqa: E402
from tests.webapps.node.support import give_home, write_app  # noqa: E402
from webapps.node.control import call  # noqa: E402
from webapps.node.spec import AppSpec  # noqa: E402
from webapps.node.supervisor import process_rss  # noqa: E402

# Every app has an owner of its own, as on a host of many users: an isolated node's limits are
# per owner (NODE_OWNER_MEMORY_MB, NODE_OWNER_PIDS), and 50 apps of one owner would pass them.
UID_BASE = 1_500_100  # owner i's uid with --isolated
MiB = 1024 * 1024
APP = """
    def application(environ, start_response):
        body = environ["HTTP_HOST"].encode()
        start_response("200 OK", [("Content-Type", "text/plain"),
                                  ("Content-Length", str(len(body)))])
        return [body]
"""


def serve(config_file: str) -> int:
    """Run the bench node (``--serve``)."""
    from webapps.node.server import NodeConfig, NodeServer

    cfg = json.loads(Path(config_file).read_text())
    specs = {domain: AppSpec(**fields) for domain, fields in cfg["apps"].items()}
    isolated, in_force = None, ("isolation: off",)
    if cfg["isolated"]:
        from webapps.node import launching

        isolated, in_force = launching.prepare(
            "many", apps_share_node_user=False, panel_uid=999_999, panel_gid=999_999
        )
    config = NodeConfig(
        name="many",
        host="127.0.0.1",
        port=cfg["port"],
        run_dir=Path(cfg["run_dir"]),
        log_dir=Path(cfg["log_dir"]),
        home_root=Path(cfg["home_root"]),
        panel_host="panel.localhost",
        base_dir=ROOT,
        idle_timeout=None,
        max_running=cfg["cap"],
        isolated=isolated,
        in_force=in_force,
    )
    server = NodeServer(config, lookup=specs.get)
    try:
        import uvloop
    except ImportError:
        asyncio.run(server.run_until_signalled())
    else:
        uvloop.run(server.run_until_signalled())
    return 0


def get(port: int, host: str, timeout: float = 60.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", "/", headers={"Host": host})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def get_unix(path: str) -> int:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(path)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: peer.bench\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return int(data.split(b" ", 2)[1])


def gunicorn_first_answer(source: Path, workdir: Path, workers: int) -> float:
    """ms from exec'ing the app's gunicorn to its first answer (the peer)."""
    sock = workdir / "peer.sock"
    sock.unlink(missing_ok=True)
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--workers", str(workers), "--bind", f"unix:{sock}",
         "--error-logfile", "/dev/null", "wsgi:application"],
        cwd=source, env={"PATH": "/usr/bin:/bin", "HOME": str(source.parent)},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = started + 30
        while True:
            try:
                if get_unix(str(sock)) == 200:
                    return (time.perf_counter() - started) * 1000
            except OSError:
                pass
            if time.perf_counter() > deadline or process.poll() is not None:
                raise RuntimeError("the peer gunicorn did not answer")
            time.sleep(0.001)
    finally:
        # Measured: kill it (its other worker may still be booting, and one that gets SIGTERM
        # before it installed its handlers keeps a graceful stop waiting for 30 s).
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(20)


def fully_started(control: str, domain: str, workers: int) -> bool:
    apps = call(control, {"op": "status"}, timeout=30)["apps"]
    return any(a["name"] == domain and a["workers_ready"] >= workers for a in apps)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def tree(pid: int) -> list[int]:
    found, todo = [pid], [pid]
    while todo:
        current = todo.pop()
        try:
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue
        found += map(int, children)
        todo += map(int, children)
    return found


def spread(values: list[float]) -> str:
    if not values:
        return "-"
    return f"min {min(values):.1f}  median {statistics.median(values):.1f}  max {max(values):.1f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--apps", type=int, default=200, help="apps the node knows")
    parser.add_argument("--cap", type=int, default=50, help="apps it may run at once")
    parser.add_argument("--duration", type=float, default=40, help="seconds of round-robin load")
    parser.add_argument("--clients", type=int, default=8, help="concurrent client threads")
    parser.add_argument("--cold", type=int, default=20, help="cold starts to time (each side)")
    parser.add_argument(
        "--isolated",
        action="store_true",
        help="run the apps in their owner's sandbox, as a node does as root (default: as the "
        "node's user, which is what the peer gunicorn runs as)",
    )
    parser.add_argument("--serve", metavar="CONFIG", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return serve(args.serve)
    workdir = Path(tempfile.mkdtemp(prefix="mb-", dir="/tmp"))
    node = None
    try:
        home = workdir / "home"
        apps, cold = {}, []
        for i in range(args.apps + args.cold):
            domain = f"app{i}.many.bench" if i < args.apps else f"cold{i - args.apps}.many.bench"
            owner = f"owner{i}"
            source = write_app(home, owner, domain, APP)
            apps[domain] = {"name": domain, "source_directory": str(source), "owner": owner}
            if args.isolated:
                apps[domain].update(uid=UID_BASE + i, gid=UID_BASE + i)
                give_home(home / owner, UID_BASE + i)
            if i >= args.apps:
                cold.append((domain, source))
        port = free_port()
        config = workdir / "node.json"
        config.write_text(json.dumps({
            "port": port, "apps": apps, "cap": args.cap, "run_dir": str(workdir / "r"),
            "log_dir": str(workdir / "l"), "home_root": str(home), "isolated": args.isolated,
        }))  # fmt: skip
        output = (workdir / "node.out").open("w")
        node = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(config)],
            stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        wait_until(lambda: port_open("127.0.0.1", port), 30, what="the bench node")
        control = str(workdir / "r" / "control.sock")
        workers = AppSpec(name="x", source_directory="/").workers
        mode = "isolated (a sandbox per app)" if args.isolated else "run as the node's user"
        load = " ".join(f"{v:.2f}" for v in os.getloadavg())
        print(f"load average at start: {load}; apps {mode}")

        # 1. cold starts, interleaved with the peer's
        ours, peer = [], []
        get(port, cold[0][0])  # the node's first start ever warms its own code paths
        for i, (domain, source) in enumerate(cold[1:]):
            if i % 2:  # alternate who goes first: neither always follows the other's start
                peer.append(gunicorn_first_answer(source, workdir, workers))
            started = time.perf_counter()
            status, body = get(port, domain)
            ours.append((time.perf_counter() - started) * 1000)
            assert (status, body) == (200, domain.encode()), (status, body[:300])
            # its other worker boots after the first answer: let it finish before the next one
            wait_until(lambda d=domain: fully_started(control, d, workers), 30, what=domain)
            if not i % 2:
                peer.append(gunicorn_first_answer(source, workdir, workers))
        p50, p99 = percentile(ours, 0.5), percentile(ours, 0.99)
        g50, g99 = percentile(peer, 0.5), percentile(peer, 0.99)
        print(f"cold start, first request to a stopped app ({len(ours)} starts, {workers} sync "
              f"workers):")  # fmt: skip
        print(f"  node -> app           p50 {p50:6.0f} ms   p99 {p99:6.0f} ms")
        print(f"  gunicorn exec->answer p50 {g50:6.0f} ms   p99 {g99:6.0f} ms")
        print(f"  node/gunicorn: p50 x{p50 / g50:.2f}, p99 x{p99 / g99:.2f} (target <= 1.3x)")

        # 2. round-robin over every app
        names = [d for d in apps if d.startswith("app")]
        before = call(control, {"op": "status"}, timeout=30)["capacity"]
        errors: list[str] = []
        answered = [0] * args.clients
        stop_at = time.perf_counter() + args.duration

        def client(k: int) -> None:
            n = k * len(names) // args.clients
            while time.perf_counter() < stop_at:
                domain = names[n % len(names)]
                n += 1
                try:
                    status, body = get(port, domain)
                except OSError as exc:
                    errors.append(f"{domain}: {exc!r}")
                    continue
                if (status, body) != (200, domain.encode()):
                    why = re.search(rb"could not answer: (.*?)</p>", body)
                    errors.append(f"{domain}: {status} {(why.group(1) if why else body[:200])!r}")
                else:
                    answered[k] += 1

        started = time.perf_counter()
        threads = [threading.Thread(target=client, args=(k,)) for k in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(args.duration + 120)
        elapsed = time.perf_counter() - started
        status = call(control, {"op": "status"}, timeout=30)
        after = status["capacity"]
        running = [a for a in status["apps"] if a["rss_bytes"] is not None]
        per_app = [a["rss_bytes"] / MiB for a in running]
        per_process = [
            rss / MiB for a in running for pid in tree(a["pid"]) if (rss := process_rss(pid))
        ]
        starts = after["starts"] - before["starts"]
        print(f"round-robin over {len(names)} apps, cap {args.cap}, {args.clients} clients, "
              f"{elapsed:.0f} s:")  # fmt: skip
        print(f"  requests {sum(answered)}  errors {len(errors)}  "
              f"({sum(answered) / elapsed:.1f} req/s)")  # fmt: skip
        print(f"  cold starts {starts} ({starts / elapsed:.1f}/s), apps stopped for room "
              f"{after['evictions'] - before['evictions']}, most running at once "
              f"{after['peak_running']} (cap {after['max_running']})")  # fmt: skip
        print(f"  node RSS {status['rss_bytes'] / MiB:.1f} MiB")
        print(f"  per running app ({len(running)}), MiB: {spread(per_app)}")
        print(f"  per app process ({len(per_process)}), MiB: {spread(per_process)}")
        print(f"load average at end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
        for line in errors[:10]:
            print(f"  error: {line}")
        return 1 if errors else 0
    finally:
        if node is not None:
            node.terminate()
            try:
                node.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(node.pid, signal.SIGKILL)
                node.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
