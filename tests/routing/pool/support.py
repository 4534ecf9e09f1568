"""Helpers of the pool's tests: a small real platform for fault tests, and its change driver.

``Stack``: its own Redis, a database file (or PostgreSQL database) shared by a Celery worker,
Celery beat, a change driver and the CLI, and a route subscriber running in a thread. Every
process runs in its own process group and is stopped at close; every wait has a deadline.

The driver (``main``): run as ``python -m tests.routing.pool.support`` with the stack's
environment (DATABASE_URL, REDIS_URL, ...). It sets Django up once, then reads one JSON request
per line on stdin and answers one JSON line on stdout, so a test makes many committed changes
without paying Django's start-up each time. Requests: ``{"action": "<do_* name>", "args": [...],
"kwargs": {...}}`` (actor None, via CLI), ``{"table": true}`` (the committed table as JSON) or
``{"enqueue": [args], "task_id": id}``. Nothing here imports Django at module level, so the
driver's process sets it up itself.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import redis

from routing.keys import load_or_create_signing_key, trusted_keys_from
from routing.publish import signature_key, table_key
from routing.signing import sign
from routing.subscriber import RouteSubscriber
from routing.table import RouteTable
from tests.support import RedisServer, child_env, repo_root, wait_until

PREFIX = "stack:"


def database_for(tmp: Path) -> tuple[str, object]:
    """(DATABASE_URL, cleanup) for the stack: PostgreSQL when the run uses it, else SQLite."""
    base = os.environ.get("DATABASE_URL", "")
    if not base.startswith(("postgres://", "postgresql://")):
        return f"sqlite:///{tmp / 'stack.sqlite3'}", lambda: None
    import psycopg

    name = os.environ.get("DATABASE_TEST_NAME", "test_hosting") + "_stack"
    parts = urlsplit(base)
    url = urlunsplit(parts._replace(path="/" + name))
    conn_url = urlunsplit(parts._replace(scheme="postgresql"))

    def execute(sql: str) -> None:
        with psycopg.connect(conn_url, autocommit=True, connect_timeout=10) as conn:
            conn.execute(sql)

    execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    execute(f'CREATE DATABASE "{name}"')
    return url, lambda: execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class ThreadedSubscriber:
    """A RouteSubscriber on an event loop of its own thread; records every version it takes."""

    def __init__(self, redis_url: str, **kwargs) -> None:
        self.versions: list[int] = []
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.subscriber = RouteSubscriber(
            redis_url, prefix=PREFIX, on_change=self._record, **kwargs
        )
        self._call(self.subscriber.start())

    def _record(self, table: RouteTable) -> None:
        self.versions.append(table.version)

    def _call(self, coro, timeout: float = 30.0):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    @property
    def table(self) -> RouteTable | None:
        return self.subscriber.table

    @property
    def stats(self):
        return self.subscriber.stats

    def wait_for_version(self, version: int, timeout: float = 30.0) -> RouteTable:
        return self._call(self.subscriber.wait_for_version(version, timeout), timeout + 5)

    def close(self) -> None:
        try:
            self._call(self.subscriber.stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()


class Stack:
    def __init__(self, tmp: Path, period: int = 1) -> None:
        self.tmp = tmp
        self.period = period
        self.var_dir = tmp / "var"
        self.redis = RedisServer().start()
        self.database_url, self._drop_database = database_for(tmp)
        self.env = child_env(
            DJANGO_SETTINGS_MODULE="panel.settings",
            DATABASE_URL=self.database_url,
            REDIS_URL=self.redis.url,
            REDIS_PREFIX=PREFIX,
            ROUTES_REPUBLISH_SECONDS=str(period),
            VAR_DIR=str(self.var_dir),
            SECRET_KEY="stack-secret-key-" + "x" * 40,
            LOG_LEVEL="INFO",
            PYTHONPATH=str(repo_root()),
        )
        self.env.pop("DATABASE_TEST_NAME", None)
        self.processes: dict[str, subprocess.Popen] = {}
        self._answers: queue.Queue[str] = queue.Queue()
        self.client = redis.Redis.from_url(self.redis.url, socket_timeout=5)

    # --- processes ------------------------------------------------------------------------

    def _spawn(self, name: str, args: list[str], **kwargs) -> subprocess.Popen:
        log = open(self.tmp / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        process = subprocess.Popen(
            args,
            cwd=repo_root(),
            env=self.env,
            stdout=kwargs.pop("stdout", log),
            stderr=log,
            start_new_session=True,
            **kwargs,
        )
        log.close()
        self.processes[name] = process
        return process

    def log(self, name: str) -> str:
        path = self.tmp / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def manage(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=repo_root(),
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def start_driver(self) -> None:
        process = self._spawn(
            "driver",
            [sys.executable, "-m", "tests.routing.pool.support"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

        def pump() -> None:
            for line in process.stdout:
                self._answers.put(line)

        self._pump = threading.Thread(target=pump, daemon=True)
        self._pump.start()

    def call(self, request: dict, timeout: float = 60) -> dict:
        process = self.processes["driver"]
        process.stdin.write(json.dumps(request) + "\n")
        process.stdin.flush()
        try:
            return json.loads(self._answers.get(timeout=timeout))
        except queue.Empty:
            log = self.log("driver")
            raise TimeoutError(f"driver gave no answer to {request}:\n{log}") from None

    def change(self, action: str, *args, **kwargs) -> int:
        answer = self.call({"action": action, "args": list(args), "kwargs": kwargs})
        assert answer["ok"], answer
        return answer["version"]

    def start_worker(self) -> None:
        self._spawn(
            "worker",
            [
                sys.executable, "-m", "celery", "-A", "panel", "worker",
                "--pool", "solo", "--without-gossip", "--without-mingle", "--without-heartbeat",
                "--loglevel", "INFO", "--hostname", f"pooltest-{self.redis.port}@%h",
            ],
        )  # fmt: skip

    def start_beat(self) -> None:
        self._spawn(
            "beat",
            [
                sys.executable, "-m", "celery", "-A", "panel", "beat", "--loglevel", "INFO",
                "--schedule", str(self.tmp / "beat-schedule"), "--max-interval", "1",
            ],
        )  # fmt: skip

    def stop(self, name: str, timeout: float = 15) -> None:
        process = self.processes.pop(name, None)
        if process is None:
            return
        try:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGCONT)
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout)
        except ProcessLookupError:
            pass
        finally:
            if name == "driver":
                self._pump.join(10)  # it reads stdout until EOF; close the pipe after it
            for pipe in (process.stdin, process.stdout):
                if pipe is not None:
                    pipe.close()

    # --- Redis as the proxies see it -------------------------------------------------------

    def signing_key(self):
        """The machine's signing key under the stack's VAR_DIR (what its publisher signs with)."""
        return load_or_create_signing_key(self.var_dir)

    def trusted_keys(self):
        return trusted_keys_from(self.var_dir, None)

    def set_signed(self, raw: bytes | str) -> None:
        """Write a value straight into Redis with the publisher's valid signature (a second
        writer holding the key), without announcing it."""
        data = raw.encode() if isinstance(raw, str) else raw
        self.client.mset(
            {table_key(PREFIX): data, signature_key(PREFIX): sign(data, self.signing_key())}
        )

    def published(self) -> RouteTable | None:
        raw = self.client.get(table_key(PREFIX))
        return RouteTable.from_json(raw) if raw is not None else None

    def wait_published(self, version: int, timeout: float = 30) -> RouteTable:
        def holds() -> RouteTable | None:
            table = self.published()
            return table if table is not None and table.version >= version else None

        return wait_until(holds, timeout, interval=0.05, what=f"Redis to hold version {version}")

    def close(self) -> None:
        for name in list(self.processes):
            self.stop(name)
        self.client.close()
        self.redis.cleanup()
        self._drop_database()


# --- the change driver (a process of its own) ------------------------------------------------


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "panel.settings")
    import django

    django.setup()
    from panel.accounts.models import Via
    from panel.accounts.origin import Origin
    from routing.pool import actions, tables, tasks

    origin = Origin(via=Via.CLI)
    for line in sys.stdin:
        request = json.loads(line)
        try:
            if "action" in request:
                func = getattr(actions, request["action"])
                args, kwargs = request.get("args", []), request.get("kwargs", {})
                result = func(*args, actor=None, origin=origin, **kwargs)
                version = result if isinstance(result, int) else result.version
                answer = {"ok": True, "version": version}
            elif "table" in request:
                answer = {"ok": True, "table": tables.committed_table().to_json()}
            elif "enqueue" in request:
                task = tasks.publish_routes
                task.apply_async(request["enqueue"], task_id=request.get("task_id"), retry=False)
                answer = {"ok": True}
            else:
                answer = {"ok": False, "error": f"unknown request {request!r}"}
        except actions.ActionError as exc:
            answer = {"ok": False, "error": exc.message}
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
