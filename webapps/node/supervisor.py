"""The process shell around ``webapps.node.state``: one gunicorn process per app.

Each app runs as ``gunicorn`` in its own process group, bound to a unix socket under the run
directory, with its output piped into size-bounded logs (``webapps.node.logs``). A worker
announces itself through a pipe once it has imported the app (``gunicorn_conf.post_worker_init``)
so starts and reloads wait for workers that really answer, not just for the socket. A start is
ready once its first worker has imported the app (requests queue in the socket's backlog for
it); a reload once every new worker has.

At most ``max_running`` user apps have a process at once (the panel, a system app, is not
counted): a start that would pass it stops the least recently used idle app first and waits for
that process to exit (the rules are ``state.admit`` and ``state.victim``). Which apps are idle
the HTTP side says (``busy``, requests in flight through the node); an app is never stopped
mid-request while another could be, and only after ``stop_timeout`` of waiting with every
running app busy is the least recently used busy one stopped (gracefully: its in-flight
requests finish).

Reload is gunicorn's graceful HUP: new workers load the code, the old ones finish their
in-flight requests; requests arriving meanwhile wait in the socket's backlog. When the new code
fails to import, gunicorn's master gives up and exits; the app answers 502 until it is fixed.

Each spawn and HUP is a new generation (``AppState.generation``): the node writes its number to
a small file the process inherits by descriptor, the workers it boots read it, report
``<pid> <generation>`` when ready and tag their responses with it; only workers of the
generation being loaded count as fresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from webapps.node import logs as applogs
from webapps.node import pythons as node_pythons
from webapps.node.launching import Isolated, plan_launch
from webapps.node.outcome import Result
from webapps.node.sandbox import LAUNCH_FAILED
from webapps.node.spec import (
    GENERATION_BYTES,
    AppSpec,
    SourceRefused,
    app_env,
    check_source,
    gunicorn_argv,
    python_for,
    socket_path,
)
from webapps.node.state import Admit, AppState, OnReload, OnRequest, Phase, admit, victim

log = logging.getLogger(__name__)

RETIRE_WAIT = 2.0  # seconds a reload waits for the old workers to exit (``_retired``)

ERROR_TAIL_LINES = 30
# What a failed start or reload reports: the error log's lines since it began, up to this much.
# The app's own traceback comes first, before gunicorn's lines about giving up.
CAPTURE_MAX_BYTES = 8 * 1024
_READY_LINE_MAX = 64  # a ready line is a pid; anything longer is not ours


_SERVING = (Phase.RUNNING, Phase.RELOADING)


class AppUnavailable(Exception):
    """The app cannot serve now; the HTTP side answers ``status`` (502: it failed, 504: it was
    not ready in time) with a page naming the app and its error log."""

    def __init__(self, name: str, reason: str, error_log: Path, status: int = 502) -> None:
        super().__init__(f"{name}: {reason}")
        self.name = name
        self.reason = reason
        self.error_log = error_log
        self.status = status


@dataclass(frozen=True)
class ReloadOutcome:
    result: Result
    message: str
    duration_ms: int | None  # None when nothing was restarted (not running here)
    log_tail: str = ""
    workers: int | None = None  # reloaded: how many new workers answer
    generation: int | None = None  # reloaded: the generation that now serves

    @property
    def ok(self) -> bool:
        return self.result != Result.FAILED


@dataclass
class _App:
    spec: AppSpec
    socket: Path
    access: applogs.RotatingLog
    error: applogs.RotatingLog
    server: applogs.RotatingLog
    state: AppState = field(default_factory=AppState)
    process: asyncio.subprocess.Process | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    waiters: list[tuple[int, asyncio.Future]] = field(default_factory=list)
    ready_count: int = 0
    old_pids: frozenset[int] = frozenset()
    serving: set[int] = field(default_factory=set)  # workers ready in this generation (inner pids)
    retiring: tuple[tuple[int, str], ...] = ()  # the previous generation's: (host pid, start time)
    pipes_open: int = 0
    pipes_closed: asyncio.Event = field(default_factory=asyncio.Event)
    transports: list[asyncio.BaseTransport] = field(default_factory=list)
    capture: bytearray = field(default_factory=bytearray)
    generation_fd: int = -1  # the file the process reads its generation from
    group: str | None = None  # the owner's cgroup its running process is in
    on_change: Callable[[], None] | None = None  # the supervisor's: slots may have changed

    def notify(self) -> None:
        """Wake everyone waiting for this app's state to change."""
        self.changed.set()
        self.changed = asyncio.Event()
        if self.on_change is not None:
            self.on_change()


class _LogPipe(asyncio.Protocol):
    """Reads one of the app's output pipes into a log file, chunk by chunk (no buffering)."""

    def __init__(self, app: _App, sink: applogs.RotatingLog) -> None:
        self.app = app
        self.sink = sink

    def data_received(self, data: bytes) -> None:
        self.sink.write(data)
        if self.sink is self.app.error and len(self.app.capture) < CAPTURE_MAX_BYTES:
            self.app.capture += data[: CAPTURE_MAX_BYTES - len(self.app.capture)]

    def connection_lost(self, exc: Exception | None) -> None:
        self.app.pipes_open -= 1
        if self.app.pipes_open <= 0:
            self.app.pipes_closed.set()


class _ReadyPipe(asyncio.Protocol):
    """Reads ``<pid> <generation>`` lines that gunicorn workers write once they serve."""

    def __init__(self, app: _App, on_ready: Callable[[_App, int, int], None]) -> None:
        self.app = app
        self.on_ready = on_ready
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        *lines, self.buffer = self.buffer.split(b"\n")
        if len(self.buffer) > _READY_LINE_MAX:
            self.buffer = b""
        for line in lines:
            fields = line.split()
            if len(fields) == 2 and fields[0].isdigit() and fields[1].isdigit():
                self.on_ready(self.app, int(fields[0]), int(fields[1]))

    def connection_lost(self, exc: Exception | None) -> None:
        self.app.pipes_open -= 1
        if self.app.pipes_open <= 0:
            self.app.pipes_closed.set()


class Supervisor:
    """Starts, reloads and stops the app processes of one node."""

    def __init__(
        self,
        *,
        run_dir: Path,
        log_dir: Path,
        home_root: Path,
        idle_timeout: float | None = 900.0,
        start_timeout: float = 30.0,
        reload_timeout: float = 30.0,
        stop_timeout: float = 15.0,
        request_timeout: int = 60,
        max_running: int | None = None,
        coalesce_window: float = 0.05,
        log_max_bytes: int = applogs.DEFAULT_MAX_BYTES,
        base_env: dict[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
        isolated: Isolated | None = None,
        max_workers: int = 8,
        max_threads: int = 8,
        max_timeout: int = 300,
        pythons: dict[str, str] | None = None,
        platform_packages: Path | None = None,
    ) -> None:
        self.run_dir = run_dir
        self.log_dir = log_dir
        self.home_root = home_root
        self.idle_timeout = idle_timeout
        self.start_timeout = start_timeout
        self.reload_timeout = reload_timeout
        self.stop_timeout = stop_timeout
        self.request_timeout = request_timeout
        self.coalesce_window = coalesce_window
        self.log_max_bytes = log_max_bytes
        self.base_env = dict(os.environ if base_env is None else base_env)
        self.clock = clock
        # None: apps run as the node's own user (the node was told they may share it)
        self.isolated = isolated
        self.max_workers = max_workers
        self.max_threads = max_threads
        self.max_timeout = max_timeout
        if max_running is not None and max_running < 1:
            raise ValueError(f"max_running must be at least 1 (or None: no cap), not {max_running}")
        self.max_running = max_running  # user apps with a process at once; None: no cap
        # Whether requests for an app are in flight (the HTTP side sets it; it calls
        # ``request_done`` when an app's last one ends, so a start waiting for a slot looks again).
        self.busy: Callable[[str], bool] = lambda name: False
        self.starts = 0  # processes spawned
        self.evictions = 0  # apps stopped to make room for another
        self.peak_running = 0  # the most user apps that held slots at once
        # Apps waiting for a slot, in arrival order: name -> the requests waiting for it.
        self._queue: dict[str, set[object]] = {}
        self._slots = asyncio.Event()
        self._apps: dict[str, _App] = {}
        self._tasks: set[asyncio.Task] = set()
        self._closing = False  # stop_all began: nothing may start any more
        # The interpreters an app's python_version picks from (default: the node's own), and
        # the node's gunicorn for virtualenvs that have none (``webapps.node.pythons``).
        self.pythons = dict(pythons or {node_pythons.own_version(): sys.executable})
        (run_dir / "apps").mkdir(parents=True, exist_ok=True)
        log_dir.mkdir(parents=True, exist_ok=True)
        self.server_path = node_pythons.server_packages(run_dir / "server", self.pythons)
        # The platform's package sets (PLATFORM_PACKAGES_DIR): read-only in every sandbox, for
        # the virtualenvs that name one (the Django and Flask templates).
        self.platform_packages = platform_packages
        self._kill_stale_groups()

    # --- public API ------------------------------------------------------------------------
    def ready_socket(self, spec: AppSpec) -> str | None:
        """The socket when the app's process already serves with these settings, else None.

        The request path's fast lane: no coroutine, no waiting. Counts as a request (idle time).
        """
        app = self._apps.get(spec.name)
        if app is None or app.spec != spec or app.state.phase not in _SERVING:
            return None
        app.state.on_request(self.clock())
        return str(app.socket)

    async def socket_for(self, spec: AppSpec) -> str:
        """The socket of the app's running process, starting it first if needed.

        Raises ``AppUnavailable`` when it cannot start, crashed a moment ago, or is too slow.
        """
        app = self._app(spec)
        capped = self.max_running is not None and not spec.system
        began = self.clock()
        # A start may first wait for another app to stop (up to twice the stop timeout when
        # every running app is busy), then for its own first worker.
        deadline = began + self.start_timeout + self.stop_timeout * (3 if capped else 1)
        token = object()
        try:
            while True:
                if self._closing:
                    raise AppUnavailable(spec.name, "the node is shutting down", self._err(app))
                now = self.clock()
                remaining = deadline - now
                if capped and app.state.wants_start(now):
                    self._queue.setdefault(spec.name, set()).add(token)
                    room = self._make_room(spec.name, allow_busy=now - began >= self.stop_timeout)
                    if not room:
                        if remaining <= 0:
                            raise AppUnavailable(
                                spec.name,
                                f"the server already runs as many apps as it may "
                                f"({self.max_running}) and none could be stopped in time",
                                self._err(app),
                                status=504,
                            )
                        if now - began < self.stop_timeout:
                            remaining = min(remaining, began + self.stop_timeout - now)
                        await self._wait(self._slots, remaining)
                        continue
                wait_on = app.changed
                decision = app.state.on_request(now)
                if decision == OnRequest.FORWARD:
                    return str(app.socket)
                if decision == OnRequest.FAIL:
                    raise self._unavailable(app)
                if decision == OnRequest.START:
                    self._queue.pop(spec.name, None)
                    app.spec = spec
                    self._spawn_task(self._start(app))
                    self._count_running()
                if remaining <= 0:
                    raise AppUnavailable(
                        spec.name, "it did not become ready in time", self._err(app), status=504
                    )
                await self._wait(wait_on, remaining)
        finally:
            waiting = self._queue.get(spec.name)
            if waiting is not None:
                waiting.discard(token)
                if not waiting:
                    del self._queue[spec.name]

    async def reload(self, spec: AppSpec) -> ReloadOutcome:
        """Gracefully restart the app's process with fresh code, if it runs here."""
        started = self.clock()
        app = self._apps.get(spec.name)
        if app is None or app.state.phase not in _SERVING:
            # Nothing to restart here; settings that cannot start are said now, not at the
            # next request (a virtualenv of another Python, a missing directory...).
            refused = self._refusal(spec)
            if refused:
                self._app(spec).error.line(refused)
                return self._failed(started, refused, self.error_tail(spec.name))
        if app is None:
            return _not_running()
        if app.spec != spec and app.state.phase in (Phase.RUNNING, Phase.RELOADING):
            # Settings that gunicorn reads from its command line changed: HUP cannot apply them,
            # so stop the process and start it anew, reporting how that start went.
            changes = settings_changes(self.bounded(app.spec), self.bounded(spec))
            app.server.line(f"settings changed ({changes}): restarting the process")
            await self._stop(app, "settings changed")
            try:
                await self.socket_for(spec)
                await self._every_worker(app, started + self.reload_timeout)
            except AppUnavailable as exc:
                return self._failed(started, exc.reason, self._captured(app))
            return self._reloaded(
                started, app, app.state.generation, f"restarted with the new settings ({changes})"
            )
        if app.state.phase == Phase.RUNNING and len(app.serving) < self.bounded(spec).workers:
            # A start serves from its first worker; the others may still be importing. Let them
            # finish before the HUP, so that one failing (the code changed meanwhile) is this
            # reload's failure, reported with its traceback, not a crash after it.
            try:
                await self._every_worker(app, started + self.reload_timeout)
            except AppUnavailable as exc:
                return self._failed(started, exc.reason, self._captured(app))
        app.spec = spec
        decision = app.state.on_reload()
        if decision == OnReload.NOT_RUNNING:
            app.server.line("reload: not running; the next request starts it with fresh code")
            app.notify()
            return _not_running()
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        app.waiters.append((app.state.target(decision), future))
        if decision == OnReload.HUP:
            self._spawn_task(self._signal_reload(app, self.coalesce_window))
        try:
            error, generation = await asyncio.wait_for(asyncio.shield(future), self.reload_timeout)
        except TimeoutError:
            app.state.on_reload_timed_out()
            app.server.line(f"reload: new workers did not answer within {self.reload_timeout:g}s")
            return self._failed(
                started,
                f"the new workers did not answer within {self.reload_timeout:g} s",
                self.error_tail(spec.name),
            )
        if error:
            return self._failed(started, error, self._captured(app))
        await self._retired(app)
        outcome = self._reloaded(started, app, generation, "reloaded")
        app.server.line(f"reloaded in {outcome.duration_ms} ms (generation {generation})")
        return outcome

    def request_done(self, name: str) -> None:
        """The last request in flight for ``name`` ended: a start waiting for a slot may stop it."""
        if self._queue:
            self._wake_slots()

    async def stop(self, name: str, reason: str) -> None:
        app = self._apps.get(name)
        if app is not None:
            await self._stop(app, reason)

    async def stop_all(self) -> None:
        self._closing = True
        await asyncio.gather(
            *(self._stop(app, "node shutting down") for app in self._apps.values())
        )
        # Apps that were already on their way out (stopped for room, idle, failed to start) end
        # in tasks of their own: let those see their process exit before they are cancelled.
        deadline = self.clock() + self.stop_timeout + 5.0
        for app in self._apps.values():
            while app.process is not None and self.clock() < deadline:
                await self._wait(app.changed, min(0.5, deadline - self.clock()))
        for task in list(self._tasks):
            task.cancel()
        for app in self._apps.values():
            for sink in (app.access, app.error, app.server):
                sink.close()

    async def reap_idle(self) -> None:
        """Stop apps unused for ``idle_timeout``; runs for the node's lifetime."""
        if self.idle_timeout is None:
            return
        interval = max(0.05, min(5.0, self.idle_timeout / 4))
        while True:
            await asyncio.sleep(interval)
            now = self.clock()
            for app in list(self._apps.values()):
                timeout = None if app.spec.system else self.idle_timeout
                if app.state.is_idle(now, timeout) and not self.busy(app.spec.name):
                    self._spawn_task(self._stop(app, f"idle for {self.idle_timeout:g}s"))

    def running(self) -> list[str]:
        return [
            n for n, a in self._apps.items() if a.state.phase in (Phase.RUNNING, Phase.RELOADING)
        ]

    def status(self) -> list[dict]:
        """Every app the node has seen; a running one with the memory of its process tree."""
        answer = []
        for name, app in sorted(self._apps.items()):
            pid = app.process.pid if app.process and app.process.returncode is None else None
            rss, processes = tree_rss(pid) if pid else (None, 0)
            answer.append(
                {
                    "name": name,
                    "phase": str(app.state.phase),
                    "pid": pid,
                    "restarts": app.state.restarts,
                    "generation": app.state.generation,
                    "failures": app.state.failures,
                    "last_error": app.state.last_error,
                    # workers of the current generation that have imported the app (a start
                    # serves from the first one; the others join as they are ready)
                    "workers_ready": len(app.serving) if pid else 0,
                    "rss_bytes": rss,  # summed over its processes (shared pages counted in each)
                    "processes": processes,
                    "idle_seconds": round(max(0.0, self.clock() - app.state.last_used), 1)
                    if app.state.last_used
                    else None,
                }
            )
        return answer

    def capacity(self) -> dict:
        """How many user apps hold slots, against the cap, and how often starts made room."""
        return {
            "max_running": self.max_running,
            "running": self._holding(),
            "peak_running": self.peak_running,
            "waiting": len(self._queue),
            "starts": self.starts,
            "evictions": self.evictions,
        }

    def log_file(self, name: str, kind: str) -> Path:
        return applogs.log_path(self.log_dir, name, kind)

    def error_tail(self, name: str, lines: int = ERROR_TAIL_LINES) -> str:
        return applogs.tail(self.log_file(name, "error"), lines)

    # --- internals -------------------------------------------------------------------------
    @staticmethod
    async def _wait(event: asyncio.Event, timeout: float) -> None:
        if timeout > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), timeout)

    async def _every_worker(self, app: _App, deadline: float) -> None:
        """Wait until every worker of the app's current generation has reported ready."""
        workers = self.bounded(app.spec).workers
        while len(app.serving) < workers:
            if app.state.phase not in _SERVING:
                raise self._unavailable(app)
            if self.clock() >= deadline:
                raise AppUnavailable(
                    app.spec.name,
                    f"only {len(app.serving)} of {workers} workers answered in time",
                    self._err(app),
                    status=504,
                )
            await self._wait(app.changed, deadline - self.clock())

    def _app_changed(self) -> None:
        if self._queue:  # only starts waiting for a slot look at other apps' changes
            self._wake_slots()

    def _wake_slots(self) -> None:
        self._slots.set()
        self._slots = asyncio.Event()

    def _holding(self) -> int:
        return sum(1 for a in self._apps.values() if a.state.holding and not a.spec.system)

    def _count_running(self) -> None:
        self.peak_running = max(self.peak_running, self._holding())

    def _make_room(self, name: str, *, allow_busy: bool) -> bool:
        """True when ``name`` may start now; else stops an app for it when its turn asks so.

        Synchronous from the look to the stop: no request is forwarded to the app chosen
        between finding it idle and it being STOPPING.
        """
        apps = [a for a in self._apps.values() if not a.spec.system]
        decision = admit(
            position=list(self._queue).index(name),
            holding=sum(1 for a in apps if a.state.holding),
            stopping=sum(1 for a in apps if a.state.phase == Phase.STOPPING),
            cap=self.max_running,
        )
        if decision == Admit.START:
            return True
        if decision == Admit.EVICT:
            chosen = victim(
                (
                    (a.spec.name, a.state.last_used, self.busy(a.spec.name))
                    for a in apps
                    if a.state.phase == Phase.RUNNING
                ),
                allow_busy=allow_busy,
            )
            if chosen is not None:
                self.evictions += 1
                reason = f"making room for {name} (least recently used of {self.max_running})"
                self._stop_soon(self._apps[chosen], reason)
        return False

    def _stop_soon(self, app: _App, reason: str) -> None:
        """Begin stopping ``app`` now (it is STOPPING when this returns), finish in a task."""
        process = self._begin_stop(app, reason)
        if process is not None:
            self._spawn_task(self._finish_stop(app, process))

    def _app(self, spec: AppSpec) -> _App:
        app = self._apps.get(spec.name)
        if app is None:
            app = _App(
                spec=spec,
                socket=socket_path(self.run_dir, spec.name),
                access=applogs.RotatingLog(self.log_file(spec.name, "access"), self.log_max_bytes),
                error=applogs.RotatingLog(self.log_file(spec.name, "error"), self.log_max_bytes),
                server=applogs.RotatingLog(self.log_file(spec.name, "server"), self.log_max_bytes),
                on_change=self._app_changed,
            )
            self._apps[spec.name] = app
        return app

    def _captured(self, app: _App) -> str:
        """The error log's lines since the current start or reload began (bounded)."""
        text = bytes(app.capture).decode("utf-8", errors="replace")
        return text or self.error_tail(app.spec.name)

    def _err(self, app: _App) -> Path:
        return self.log_file(app.spec.name, "error")

    def _unavailable(self, app: _App) -> AppUnavailable:
        return AppUnavailable(app.spec.name, app.state.last_error or "it failed", self._err(app))

    def _refusal(self, spec: AppSpec) -> str:
        """Why the app may not start as it is set up now ("" when it may)."""
        try:
            check_source(spec, self.home_root)
            python_for(spec, self.pythons)
        except SourceRefused as exc:
            return str(exc)
        return ""

    def _spawn_task(self, coro) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("supervisor task failed", exc_info=task.exception())

    def bounded(self, spec: AppSpec) -> AppSpec:
        """The spec as the app runs: workers and threads held to the node's bounds per app,
        its timeout resolved (``timeout_of``)."""
        workers = max(1, min(spec.workers, self.max_workers))
        threads = max(1, min(spec.threads, self.max_threads))
        timeout = self.timeout_of(spec)
        if (workers, threads, timeout) == (spec.workers, spec.threads, spec.timeout):
            return spec
        return dataclasses.replace(spec, workers=workers, threads=threads, timeout=timeout)

    def timeout_of(self, spec: AppSpec) -> int:
        """The app's worker timeout in seconds: its own held to ``max_timeout``, else the node's
        request timeout. The node waits as long for the app's first response byte."""
        if spec.timeout <= 0:
            return self.request_timeout
        return max(1, min(spec.timeout, self.max_timeout))

    def _reloaded(self, started: float, app: _App, generation: int, message: str) -> ReloadOutcome:
        return ReloadOutcome(
            Result.RELOADED,
            message,
            int((self.clock() - started) * 1000),
            workers=self.bounded(app.spec).workers,
            generation=generation,
        )

    def _failed(self, started: float, message: str, tail: str) -> ReloadOutcome:
        return ReloadOutcome(
            Result.FAILED, message, int((self.clock() - started) * 1000), log_tail=tail
        )

    async def _start(self, app: _App) -> None:
        spec = app.spec
        try:
            cwd = check_source(spec, self.home_root)
            python = python_for(spec, self.pythons)
        except SourceRefused as exc:
            app.error.line(str(exc))
            app.server.line(str(exc))
            app.capture = bytearray(f"{exc}\n".encode())  # what this start wrote to the log
            if app.state.phase == Phase.STARTING:
                app.state.on_start_failed(self.clock(), str(exc))
            app.notify()
            return
        with contextlib.suppress(FileNotFoundError):
            app.socket.unlink()  # a stale socket from a process that was killed
        loop = asyncio.get_running_loop()
        fds = [os.pipe() for _ in range(4)]  # stdout, stderr, access, ready
        (r_out, w_out), (r_err, w_err), (r_acc, w_acc), (r_ready, w_ready) = fds
        generation_fd = _generation_file(app.state.generation)
        try:
            argv = gunicorn_argv(
                self.bounded(spec),
                socket=app.socket,
                access_fd=w_acc,
                timeout=self.timeout_of(spec),
                graceful_timeout=max(1, int(self.stop_timeout) - 2),
                python=python,
                server_path=str(self.server_path),
            )
            env = app_env(
                spec,
                home_root=self.home_root,
                base_env=self.base_env,
                ready_fd=w_ready,
                generation_fd=generation_fd,
            )
            plan = plan_launch(
                spec,
                argv=argv,
                env=env,
                cwd=cwd,
                socket=app.socket,
                home_root=self.home_root,
                fds=(w_acc, w_ready, generation_fd),
                isolated=self.isolated,
                python=python,
                server_path=str(self.server_path),
                shared=(str(self.platform_packages),) if self.platform_packages else (),
            )
            process = await asyncio.create_subprocess_exec(
                *plan.argv,
                cwd=plan.cwd,
                env=plan.env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=w_out,
                stderr=w_err,
                pass_fds=plan.pass_fds,
                start_new_session=True,  # its own process group: stopped as a whole
            )
        except (OSError, ValueError, RuntimeError) as exc:
            # OSError: spawning; ValueError (SourceRefused too), RuntimeError: the sandbox
            for r, w in fds:
                os.close(r)
                os.close(w)
            os.close(generation_fd)
            message = (
                str(exc) if isinstance(exc, SourceRefused) else f"could not start gunicorn: {exc}"
            )
            app.error.line(message)
            if app.state.phase == Phase.STARTING:
                app.state.on_start_failed(self.clock(), message)
            app.notify()
            return
        for _, w in fds:
            os.close(w)
        if app.state.phase != Phase.STARTING:
            # Stopped (node shutting down, app moved away) while we were spawning it.
            for r, _ in fds:
                os.close(r)
            os.close(generation_fd)
            self._kill_group(process, signal.SIGKILL)
            await process.wait()
            return
        self.starts += 1
        app.process = process
        app.generation_fd = generation_fd
        app.group = plan.group
        app.capture = bytearray()
        app.ready_count = 0
        app.old_pids = frozenset()
        app.serving = set()
        app.retiring = ()
        app.pipes_open = 4
        app.pipes_closed = asyncio.Event()
        app.transports = []
        for r, sink in ((r_out, app.server), (r_err, app.error), (r_acc, app.access)):
            transport, _ = await loop.connect_read_pipe(
                lambda sink=sink: _LogPipe(app, sink), os.fdopen(r, "rb", buffering=0)
            )
            app.transports.append(transport)
        transport, _ = await loop.connect_read_pipe(
            lambda: _ReadyPipe(app, self._worker_ready), os.fdopen(r_ready, "rb", buffering=0)
        )
        app.transports.append(transport)
        who = "" if plan.uid is None else f" as uid {plan.uid}"
        app.server.line(
            f"started gunicorn pid {process.pid}{who} ({spec.wsgi_entry} in {cwd}, "
            f"generation {app.state.generation})"
        )
        _pidfile(app.socket).write_text(f"{process.pid} {_start_time(process.pid)}")
        self._spawn_task(self._watch(app, process))
        self._spawn_task(self._start_deadline(app, process))

    async def _start_deadline(self, app: _App, process: asyncio.subprocess.Process) -> None:
        await asyncio.sleep(self.start_timeout)
        if app.process is process and app.state.phase == Phase.STARTING:
            message = f"did not answer within {self.start_timeout:g} s of starting"
            app.error.line(f"{message}; stopping it")
            app.state.on_start_failed(self.clock(), message)
            app.notify()
            self._kill_group(process, signal.SIGKILL)

    async def _retired(self, app: _App) -> None:
        """Wait, briefly, until the previous generation's workers have exited.

        gunicorn's master signals them after forking the new ones, but on a busy machine the new
        workers can be ready before an old one has even run its signal handler; until then it may
        accept a request and answer it with the old code. So a reload answers "reloaded" once
        they are gone. An old worker still busy with a long request after ``RETIRE_WAIT`` does not
        hold the answer up: it has its signal by then, and a sync worker that has it accepts no
        further request, so it finishes that one and exits.
        """
        deadline = self.clock() + RETIRE_WAIT
        while any(_is_alive(pid, start) for pid, start in app.retiring):
            if self.clock() >= deadline:
                app.server.line("reload: an old worker is still finishing a request")
                break
            await asyncio.sleep(0.01)
        app.retiring = ()

    def _worker_ready(self, app: _App, pid: int, generation: int) -> None:
        if generation == app.state.generation and pid not in app.old_pids:
            app.serving.add(pid)  # also a worker gunicorn boots to replace one that died
        phase = app.state.phase
        counting = phase == Phase.STARTING or (phase == Phase.RELOADING and app.state.signalled)
        if not counting or pid in app.old_pids or generation != app.state.generation:
            app.notify()  # a restart with new settings waits for every worker
            return
        app.ready_count += 1
        # A cold start serves once one worker has the app (the socket queues requests for it;
        # the others join as they are ready); a reload only once every new worker has, so that
        # no old worker is left to answer.
        needed = 1 if phase == Phase.STARTING else self.bounded(app.spec).workers
        if app.ready_count < needed:
            return
        queued = app.state.on_ready(self.clock())
        done = [(t, f) for t, f in app.waiters if t <= app.state.restarts]
        app.waiters = [(t, f) for t, f in app.waiters if t > app.state.restarts]
        for _, future in done:
            if not future.done():
                future.set_result(("", app.state.generation))
        if queued:
            self._spawn_task(self._signal_reload(app, 0.0))
        app.notify()

    async def _signal_reload(self, app: _App, delay: float) -> None:
        """Send the HUP, after a short window in which further reloads share it."""
        if delay:
            await asyncio.sleep(delay)
        process = app.process
        if app.state.phase != Phase.RELOADING or app.state.signalled or process is None:
            return
        app.state.on_signalled()
        app.capture = bytearray()
        app.ready_count = 0
        below = _descendant_pids(process.pid)
        app.old_pids = frozenset(inner for _, inner in below)
        app.retiring = tuple(
            (host, start)
            for host, inner in below
            if inner in app.serving and (start := _start_time_or_empty(host))
        )
        app.serving = set()
        _write_generation(app.generation_fd, app.state.generation)
        app.server.line(f"reload: HUP sent, generation {app.state.generation} is loading the code")
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGHUP)

    async def _watch(self, app: _App, process: asyncio.subprocess.Process) -> None:
        returncode = await process.wait()
        # Let the pipes drain so that a traceback is in the log before anyone reads its tail.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(app.pipes_closed.wait(), 2.0)
        for transport in app.transports:
            transport.close()
        self._kill_group(process, signal.SIGKILL)  # workers orphaned by a dead master
        with contextlib.suppress(FileNotFoundError):
            _pidfile(app.socket).unlink()
        if app.process is process:
            app.process = None
            if app.generation_fd >= 0:
                os.close(app.generation_fd)
                app.generation_fd = -1
            if app.group is not None and self.isolated and self.isolated.groups is not None:
                with contextlib.suppress(OSError):
                    self.isolated.groups.remove(app.group)  # only once the owner has none left
        with contextlib.suppress(FileNotFoundError):
            app.socket.unlink()
        if app.state.phase in (Phase.STOPPING, Phase.STOPPED, Phase.BACKOFF):
            if app.state.phase == Phase.STOPPING:
                app.state.on_exited(self.clock(), "")
            app.server.line(f"gunicorn pid {process.pid} stopped (exit code {returncode})")
        else:
            what = _describe_exit(returncode, app.state.phase)
            app.error.line(what)
            app.server.line(what)
            app.state.on_exited(self.clock(), what)
        for _, future in app.waiters:
            if not future.done():
                future.set_result((app.state.last_error or "the app stopped", 0))
        app.waiters = []
        app.notify()

    async def _stop(self, app: _App, reason: str) -> None:
        process = self._begin_stop(app, reason)
        if process is not None:
            await self._finish_stop(app, process)

    def _begin_stop(self, app: _App, reason: str) -> asyncio.subprocess.Process | None:
        """The synchronous half of a stop: STOPPING now; the process to signal, if any."""
        process = app.process
        if not app.state.on_stop():
            app.notify()
            return None
        app.server.line(f"stopping: {reason}")
        app.notify()
        if process is None or process.returncode is not None:
            if app.state.phase == Phase.STOPPING:
                app.state.on_exited(self.clock(), "")
            app.notify()
            return None
        return process

    async def _finish_stop(self, app: _App, process: asyncio.subprocess.Process) -> None:
        # gunicorn's graceful stop: workers finish their in-flight requests, then exit.
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.shield(process.wait()), self.stop_timeout)
        except TimeoutError:
            app.error.line(f"did not stop within {self.stop_timeout:g}s; killing it")
            self._kill_group(process, signal.SIGKILL)
            await asyncio.wait_for(asyncio.shield(process.wait()), 5.0)
        while app.state.phase == Phase.STOPPING:
            # the watcher records the exit; wait for it so callers see STOPPED
            changed = app.changed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), 5.0)

    def _kill_stale_groups(self) -> None:
        """Kill app process groups left by a node of this run directory that was killed.

        Each running app has ``<app dir>.pid`` (in the node's own directory, out of the app's
        reach) holding the pid and start time of the process the node started; a pid is only
        trusted while the process of that pid still has that start time, so a recycled pid is
        never signalled.
        """
        for pidfile in (self.run_dir / "apps").glob("*.pid"):
            try:
                pid_text, _, started = pidfile.read_text().partition(" ")
                pid = int(pid_text)
                alive = bool(started.strip()) and _start_time(pid) == started.strip()
            except (OSError, ValueError):
                alive = False
            if alive:
                log.warning("killing app process group %d left by a previous node", pid)
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)
            pidfile.unlink(missing_ok=True)

    @staticmethod
    def _kill_group(process: asyncio.subprocess.Process, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, sig)


def _describe_exit(returncode: int, phase: Phase) -> str:
    # gunicorn's master exits when a new worker fails to boot (3) or to load the app (4); during
    # a reload that surfaces as an unhandled exception (1). While loading code, that is the cause.
    if returncode == LAUNCH_FAILED:
        return "the app's sandbox could not be set up (the error log says why)"
    if returncode in (3, 4) or (returncode == 1 and phase in (Phase.STARTING, Phase.RELOADING)):
        return f"the app failed to load its code (gunicorn exited with code {returncode})"
    if returncode < 0:
        return f"gunicorn was killed by signal {signal.Signals(-returncode).name} while {phase}"
    return f"gunicorn exited with code {returncode} while {phase}"


# What a restart for changed settings names, in the words of the Web tab and the API.
_SETTING_WORDS = (
    ("workers", "workers"),
    ("threads", "threads"),
    ("timeout", "timeout"),
    ("wsgi_entry", "WSGI entry"),
    ("source_directory", "source directory"),
    ("virtualenv_path", "virtualenv"),
    ("python_version", "Python version"),
)


def settings_changes(old: AppSpec, new: AppSpec) -> str:
    """What differs between two specs as the app runs them: "workers 2 -> 4, threads 1 -> 4";
    the other differences (environment, identity) as "other settings"."""
    said = [
        f"{words} {getattr(old, name) or '-'} -> {getattr(new, name) or '-'}"
        for name, words in _SETTING_WORDS
        if getattr(old, name) != getattr(new, name)
    ]
    rest = dataclasses.replace(old, **{name: getattr(new, name) for name, _ in _SETTING_WORDS})
    if rest != new or not said:
        said.append("other settings")
    return ", ".join(said)


def _not_running() -> ReloadOutcome:
    return ReloadOutcome(
        Result.NOT_RUNNING, "not running on this node; the next request starts it", None
    )


def _generation_file(generation: int) -> int:
    """An anonymous file holding ``generation``; the app process inherits its descriptor."""
    fd = os.memfd_create("hosting-generation", os.MFD_CLOEXEC)
    _write_generation(fd, generation)
    return fd


def _write_generation(fd: int, generation: int) -> None:
    if fd >= 0:
        os.pwrite(fd, b"%0*d" % (GENERATION_BYTES, generation), 0)


def _pidfile(socket: Path) -> Path:
    return socket.parent.with_name(socket.parent.name + ".pid")


def _stat_after_name(pid: int) -> list[str]:
    """``/proc/<pid>/stat`` from field 3 (state) on: index 0 the state, 19 the start time."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _start_time(pid: int) -> str:
    """The start time of ``pid`` in clock ticks since boot (``/proc/<pid>/stat``, field 22)."""
    return _stat_after_name(pid)[19]


def _start_time_or_empty(pid: int) -> str:
    try:
        return _start_time(pid)
    except (OSError, IndexError):
        return ""


def _is_alive(pid: int, start: str) -> bool:
    """Whether ``pid`` is still the process that had start time ``start`` (not a recycled pid),
    and not a zombie waiting for its parent."""
    try:
        stat = _stat_after_name(pid)
    except OSError:
        return False
    return len(stat) > 19 and stat[19] == start and stat[0] != "Z"


def _descendant_pids(pid: int) -> list[tuple[int, int]]:
    """Every process below ``pid`` (Linux /proc): its pid here and in its innermost namespace.

    Workers report themselves by the innermost one: a sandboxed gunicorn sees its own pid
    namespace's pids (``NSpid`` in ``/proc/<pid>/status``).
    """
    found: list[tuple[int, int]] = []
    todo = [pid]
    while todo and len(found) < 4096:
        current = todo.pop()
        try:
            children = [
                int(p) for p in Path(f"/proc/{current}/task/{current}/children").read_text().split()
            ]
        except OSError:
            continue
        for child in children:
            todo.append(child)
            found.append((child, _innermost_pid(child)))
    return found


_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def tree_rss(pid: int) -> tuple[int | None, int]:
    """``(bytes, processes)``: the resident memory of ``pid`` and every process below it, summed
    (``/proc/<pid>/statm``), and how many they are; ``(None, 0)`` when ``pid`` is gone.

    Forked workers share their master's pages until they write them, so the sum counts those
    once per process: an upper bound of what stopping the app frees.
    """
    total, count = 0, 0
    for one in (pid, *(host for host, _ in _descendant_pids(pid))):
        resident = process_rss(one)
        if resident is not None:
            total += resident
            count += 1
    return (total, count) if count else (None, 0)


def process_rss(pid: int) -> int | None:
    """The resident memory of one process in bytes, or None when it is gone."""
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * _PAGE_SIZE
    except (OSError, IndexError, ValueError):
        return None


def _innermost_pid(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("NSpid:"):
                return int(line.split()[-1])
    except (OSError, ValueError):
        pass
    return pid
