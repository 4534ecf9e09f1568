"""Propagation benchmark: a committed pool change until a subscriber holds the new table.

Everything is real and on loopback: a private redis-server, a SQLite database file, a Celery
worker subprocess (``celery -A panel worker --pool solo``), and a ``RouteSubscriber`` (the
proxies' helper) on its own event loop. Each change is a committed ``do_set_weight``; the clock
starts when the transaction commits and stops when the subscriber's ``on_change`` sees the new
version. The path: commit -> queue the publish task -> worker reads the pool -> Lua
store-if-newer + PUBLISH -> subscriber GET -> new table.

Printed beside it, from the same run and the same Redis:
  - peer: raw ``PUBLISH`` -> message received by a redis-py asyncio subscriber (the floor);
  - ``publish_table`` called directly (no database, no Celery) -> subscriber holds the table.

    python bench/propagation_bench.py               # 100 changes
    python bench/propagation_bench.py --changes 300
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

# Run as a script from the repository root (`make bench`): make the project importable.
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402
import redis.asyncio as aioredis  # noqa: E402

from tests.support import RedisServer, wait_until  # noqa: E402

PREFIX = "bench:"
TIMEOUT = 10.0  # per change; a change that takes longer fails the run


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def row(label: str, samples: list[float], floor: float | None) -> str:
    p50, p99 = percentile(samples, 50), percentile(samples, 99)
    ratio = f"{p50 / floor:6.1f}x" if floor else "  1.0x"
    return (
        f"{label:<46} {len(samples):>4} {p50 * 1e3:8.2f} {p99 * 1e3:8.2f} "
        f"{max(samples) * 1e3:8.2f} {statistics.fmean(samples) * 1e3:8.2f} {ratio}"
    )


class LoopThread:
    """An event loop on a thread of its own, like a proxy's, so the main thread can commit."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro, timeout: float = 30.0):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def measure_raw_publish(url: str, loop: LoopThread, count: int) -> list[float]:
    """Peer: PUBLISH from this thread -> message read by an asyncio pubsub on the loop."""
    received: dict[int, float] = {}
    ready = threading.Event()

    async def listen() -> None:
        client = aioredis.from_url(url)
        pubsub = client.pubsub()
        await pubsub.subscribe("bench:raw")
        try:
            while len(received) < count:
                message = await pubsub.get_message(timeout=TIMEOUT)
                if message is None:
                    raise TimeoutError("raw PUBLISH: no message in time")
                if message["type"] == "subscribe":
                    ready.set()
                elif message["type"] == "message":
                    received[int(message["data"])] = time.perf_counter()
        finally:
            await pubsub.aclose()
            await client.aclose()

    listener = asyncio.run_coroutine_threadsafe(listen(), loop.loop)
    if not ready.wait(TIMEOUT):
        listener.result(TIMEOUT)  # raises what went wrong
        raise TimeoutError("raw PUBLISH: the subscription was not confirmed")
    client = redis.Redis.from_url(url)
    sent = {}
    for i in range(count):
        sent[i] = time.perf_counter()
        client.publish("bench:raw", i)
        wait_until(lambda i=i: i in received, TIMEOUT, interval=0.0005, what=f"message {i}")
    listener.result(TIMEOUT)
    client.close()
    return [received[i] - sent[i] for i in range(count)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--changes", type=int, default=100, help="pool changes to time")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="propagation-bench-"))
    server = RedisServer().start()
    env = {
        "DJANGO_SETTINGS_MODULE": "panel.settings",
        "DATABASE_URL": f"sqlite:///{tmp / 'bench.sqlite3'}",
        "REDIS_URL": server.url,
        "REDIS_PREFIX": PREFIX,
        "VAR_DIR": str(tmp / "var"),
        "SECRET_KEY": "propagation-bench-" + "k" * 40,
        "LOG_LEVEL": "WARNING",
    }
    os.environ.update(env)
    worker: subprocess.Popen | None = None
    loop = LoopThread()
    try:
        import django

        django.setup()
        from django.core.management import call_command

        from panel.accounts.models import Via
        from panel.accounts.origin import Origin
        from routing.pool import actions, tasks
        from routing.publish import publish_table
        from routing.subscriber import RouteSubscriber
        from routing.table import RouteTable

        call_command("migrate", verbosity=0)
        worker = subprocess.Popen(
            [
                sys.executable, "-m", "celery", "-A", "panel", "worker", "--pool", "solo",
                "--without-gossip", "--without-mingle", "--without-heartbeat",
                "--loglevel", "WARNING", "--hostname", f"bench-{server.port}@%h",
            ],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.DEVNULL,
            stderr=open(tmp / "worker.log", "wb"),  # noqa: SIM115 - lives as long as the worker
            start_new_session=True,
        )  # fmt: skip
        origin = Origin(via=Via.CLI)
        client = redis.Redis.from_url(server.url)
        actions.do_add_backend("b1", "127.0.0.1:9101", actor=None, origin=origin)
        setup = actions.do_add_backend("b2", "127.0.0.1:9102", actor=None, origin=origin)

        def published_version() -> int:
            raw = client.get(PREFIX + "routes")
            return RouteTable.from_json(raw).version if raw else 0

        wait_until(lambda: published_version() >= setup.version, 60, what="the worker")

        seen: dict[int, float] = {}

        def on_change(table: RouteTable) -> None:
            seen[table.version] = time.perf_counter()

        # The default poll (1 s) is far above what is measured: every change below arrives
        # through PUBLISH, not the poll.
        # Every process of the run finds the same key pair under its VAR_DIR.
        trusted = tasks.trusted_keys()
        subscriber = RouteSubscriber(
            server.url, prefix=PREFIX, on_change=on_change, trusted_keys=trusted
        )
        loop.run(subscriber.start())
        loop.run(subscriber.wait_for_version(setup.version, TIMEOUT))

        raw = measure_raw_publish(server.url, loop, args.changes)

        # The same subscriber code on a prefix of its own, fed by publish_table directly.
        direct = []
        table = subscriber.table
        direct_sub = RouteSubscriber(
            server.url, prefix="direct:", on_change=on_change, trusted_keys=trusted
        )
        loop.run(direct_sub.start())
        for i in range(args.changes):
            # Far above the pool's versions (the clock): one `seen` serves both.
            version = 2**52 + i
            table = RouteTable(version, table.algorithm, table.backends, table.published_at)
            start = time.perf_counter()
            publish_table(client, table, "direct:", signing_key=tasks.signing_key())
            loop.run(direct_sub.wait_for_version(version, TIMEOUT))
            direct.append(seen[version] - start)
        loop.run(direct_sub.stop())

        committed = []
        enqueued = []
        marks: list[float] = []
        task = tasks.publish_routes._get_current_object()
        enqueue = task.enqueue

        def marked_enqueue(*args, **kwargs):
            # The action's on_commit callback: runs at the moment the change is committed (an
            # action is its own durable transaction, so no outer one can register a mark).
            marks.append(time.perf_counter())
            return enqueue(*args, **kwargs)

        task.enqueue = marked_enqueue
        for i in range(args.changes):
            marks.clear()
            change = actions.do_set_weight("b2", 2 + i % 2, actor=None, origin=origin)
            enqueued.append(time.perf_counter() - marks[0])
            loop.run(subscriber.wait_for_version(change.version, TIMEOUT))
            committed.append(seen[change.version] - marks[0])
        stats = subscriber.stats
        loop.run(subscriber.stop())
        client.close()

        print(f"propagation over loopback, {args.changes} samples each (ms)")
        print(f"{'path':<46} {'n':>4} {'p50':>8} {'p99':>8} {'max':>8} {'mean':>8} {'p50/peer':>7}")
        floor = percentile(raw, 50)
        print(row("peer: raw PUBLISH -> asyncio pubsub message", raw, None))
        print(row("publish_table -> subscriber holds table", direct, floor))
        print(row("committed change -> subscriber holds table", committed, floor))
        print(row("  of which: commit -> publish task queued", enqueued, floor))
        print(
            f"subscriber: version {stats.version}, rejected {stats.rejected}, "
            f"reconnects {stats.reconnects}; target p99 <= 50 ms: "
            f"{'met' if percentile(committed, 99) <= 0.050 else 'NOT met'}"
        )
        return 0
    finally:
        if worker is not None and worker.poll() is None:
            os.killpg(worker.pid, 15)
            try:
                worker.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, 9)
                worker.wait(15)
        loop.close()
        server.cleanup()


if __name__ == "__main__":
    sys.exit(main())
