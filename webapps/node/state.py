"""The life of one app's worker process on a node, as a pure state machine (no I/O, no clock).

The supervisor (``webapps.node.supervisor``) owns the processes; it feeds this machine events
with the current time and carries out the decision it returns. Keeping the rules here makes
them testable without processes and keeps the shell thin.

Phases and the rules between them:

    STOPPED  --request-->  STARTING        (START: spawn the process, wait for a ready worker)
    STARTING --ready-->    RUNNING
    STARTING --failed-->   BACKOFF         (retry_at = now + backoff(failures))
    RUNNING  --reload-->   RELOADING       (HUP: gunicorn boots new workers, old ones finish)
    RELOADING --ready-->   RUNNING
    RUNNING|RELOADING --exited on its own--> BACKOFF (a crash; restarted on demand after the delay)
    RUNNING  --idle past timeout or moved away--> STOPPING --exited--> STOPPED
    BACKOFF  --request before retry_at--> BACKOFF (FAIL: answer 502 at once, do not spawn)
    BACKOFF  --request after retry_at-->  STARTING
    BACKOFF  --reload--> STOPPED           (the user fixed something: try again on next request)

Reloads coalesce: a reload that arrives before the pending HUP is sent shares it (JOIN); one
that arrives while new workers are already loading code, which may predate the caller's edit,
queues exactly one more restart shared by every such caller (QUEUE). So any burst of reloads
costs at most two restarts, and every caller gets code at least as new as its request.
A reload waiter is done once ``restarts`` reaches ``restarts + 1`` (HUP/JOIN) or ``+ 2``
(QUEUE) counted when it asked.

Generations: every spawn and every HUP begins a new ``generation`` (1, 2, ...): the workers it
boots load the code anew and tag their readiness and their responses with it, so a worker of an
older generation is never counted as fresh and an owner can tell which load served a response.

Invariants: at most one process per app; a request never spawns a process while one exists;
the failure count resets once a process has run for ``STABLE_SECONDS``.

A node runs at most ``cap`` user apps at once (``admit`` and ``victim``, below): an app holds a
slot from the moment its start is decided until its process has exited (STARTING, RUNNING,
RELOADING, STOPPING), so a start that would pass the cap first stops the least recently used
idle app and waits until that process is gone. Apps waiting for a slot queue in arrival order.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

BACKOFF_BASE = 0.5  # seconds before the first retry
BACKOFF_MAX = 30.0  # the delay never grows past this
STABLE_SECONDS = 10.0  # a process that ran this long is no longer crash-looping


class Phase(enum.StrEnum):
    STOPPED = "stopped"
    STARTING = "starting"
    RUNNING = "running"
    RELOADING = "reloading"
    STOPPING = "stopping"
    BACKOFF = "backoff"


# Phases in which an app has a process, or one is being spawned for it: each holds a slot.
HOLDING = frozenset({Phase.STARTING, Phase.RUNNING, Phase.RELOADING, Phase.STOPPING})


class OnRequest(enum.Enum):
    FORWARD = "forward"  # a process is up (or reloading: its socket queues the request)
    START = "start"  # the caller must spawn the process now (phase is STARTING)
    WAIT_START = "wait_start"  # another request is starting it: wait for that outcome
    WAIT_STOP = "wait_stop"  # it is stopping: wait, then ask again
    FAIL = "fail"  # it failed recently: answer 502 without spawning


class OnReload(enum.Enum):
    HUP = "hup"  # the caller must signal the process (phase is RELOADING, not yet signalled)
    JOIN = "join"  # a restart not yet signalled will load this reload's code: share it
    QUEUE = "queue"  # a restart is already loading code (maybe older): one more follows it
    NOT_RUNNING = "not_running"  # nothing to reload: the next request starts fresh code


def backoff_delay(failures: int) -> float:
    """Seconds to wait after the ``failures``-th consecutive failure (1, 2, ...)."""
    if failures <= 0:
        return 0.0
    return min(BACKOFF_MAX, BACKOFF_BASE * 2 ** (failures - 1))


class Admit(enum.Enum):
    START = "start"  # a slot is free for this app: start it now
    WAIT = "wait"  # a slot is being freed (an app is stopping) and it is this app's: wait
    EVICT = "evict"  # the caller must stop one app (``victim``) to make room, then wait


def admit(*, position: int, holding: int, stopping: int, cap: int | None) -> Admit:
    """Whether the app at ``position`` (0: first) of the queue of apps waiting for a slot may
    start, when ``holding`` apps hold slots, ``stopping`` of them on their way out.

    The first ``cap - holding`` of the queue take the free slots, the next ``stopping`` the
    slots being freed; any further one needs an app stopped for it.
    """
    if cap is None or holding + position < cap:
        return Admit.START
    if holding + position < cap + stopping:
        return Admit.WAIT
    return Admit.EVICT


def victim(running: Iterable[tuple[str, float, bool]], *, allow_busy: bool = False) -> str | None:
    """The app to stop for a slot, of ``(name, last_used, busy)`` for every RUNNING app that may
    be stopped: the least recently used idle one; a busy one (requests in flight) only when
    ``allow_busy`` and none is idle. None when there is none to stop."""
    candidates = list(running)
    idle = [(last_used, name) for name, last_used, busy in candidates if not busy]
    if idle:
        return min(idle)[1]
    if allow_busy and candidates:
        return min((last_used, name) for name, last_used, _ in candidates)[1]
    return None


class InvalidTransition(RuntimeError):
    """An event that the current phase does not allow: a bug in the shell, never user input."""


@dataclass
class AppState:
    phase: Phase = Phase.STOPPED
    failures: int = 0
    retry_at: float = 0.0
    started_at: float = 0.0
    last_used: float = 0.0
    last_error: str = ""
    restarts: int = 0  # spawns plus completed reloads: how often fresh code was loaded
    signalled: bool = False  # RELOADING: the HUP has been sent
    reload_queued: bool = False  # one more restart is owed once the current one is ready
    generation: int = 0  # the load being started or served: bumped by every spawn and HUP

    def _expect(self, *phases: Phase) -> None:
        if self.phase not in phases:
            raise InvalidTransition(f"event not allowed in phase {self.phase}")

    @property
    def holding(self) -> bool:
        """It has a process, or one is being spawned: it holds one of the node's slots."""
        return self.phase in HOLDING

    def wants_start(self, now: float) -> bool:
        """A request now would start a process (``on_request`` would answer START)."""
        return self.phase == Phase.STOPPED or (self.phase == Phase.BACKOFF and now >= self.retry_at)

    # --- requests ------------------------------------------------------------------------
    def on_request(self, now: float) -> OnRequest:
        self.last_used = now
        if self.phase in (Phase.RUNNING, Phase.RELOADING):
            return OnRequest.FORWARD
        if self.phase == Phase.STARTING:
            return OnRequest.WAIT_START
        if self.phase == Phase.STOPPING:
            return OnRequest.WAIT_STOP
        if self.phase == Phase.BACKOFF and now < self.retry_at:
            return OnRequest.FAIL
        self.phase = Phase.STARTING
        self.generation += 1
        return OnRequest.START

    # --- process lifecycle -----------------------------------------------------------------
    def on_ready(self, now: float) -> bool:
        """Fresh workers answer. True when a queued reload must now be signalled."""
        self._expect(Phase.STARTING, Phase.RELOADING)
        if self.phase == Phase.STARTING:
            self.started_at = now
        self.restarts += 1
        self.last_error = ""
        if self.reload_queued:
            self.reload_queued = False
            self.phase = Phase.RELOADING
            self.signalled = False
            return True
        self.phase = Phase.RUNNING
        return False

    def on_start_failed(self, now: float, error: str) -> None:
        self._expect(Phase.STARTING)
        self._fail(now, error)

    def on_exited(self, now: float, error: str) -> None:
        """The process ended. Expected while STOPPING; anything else is a crash."""
        if self.phase == Phase.STOPPING:
            self.phase = Phase.STOPPED
            return
        self._expect(Phase.STARTING, Phase.RUNNING, Phase.RELOADING)
        if self.phase != Phase.STARTING and now - self.started_at >= STABLE_SECONDS:
            self.failures = 0
        self._fail(now, error)

    def _fail(self, now: float, error: str) -> None:
        self.reload_queued = False
        self.failures += 1
        self.retry_at = now + backoff_delay(self.failures)
        self.last_error = error
        self.phase = Phase.BACKOFF

    # --- stopping --------------------------------------------------------------------------
    def is_idle(self, now: float, timeout: float | None) -> bool:
        return (
            timeout is not None and self.phase == Phase.RUNNING and now - self.last_used >= timeout
        )

    def on_stop(self) -> bool:
        """Asked to stop (idle, moved away, shutdown). True when a process must be signalled."""
        if self.phase in (Phase.STARTING, Phase.RUNNING, Phase.RELOADING):
            self.phase = Phase.STOPPING
            self.reload_queued = False
            return True
        if self.phase == Phase.BACKOFF:
            self.phase = Phase.STOPPED
        return False

    # --- reload ----------------------------------------------------------------------------
    def on_reload(self) -> OnReload:
        if self.phase == Phase.RUNNING:
            self.phase = Phase.RELOADING
            self.signalled = False
            return OnReload.HUP
        if self.phase == Phase.RELOADING and not self.signalled:
            return OnReload.JOIN
        if self.phase in (Phase.STARTING, Phase.RELOADING):
            self.reload_queued = True
            return OnReload.QUEUE
        if self.phase == Phase.BACKOFF:
            # The user changed something: the next request may try at once.
            self.phase = Phase.STOPPED
            self.failures = 0
            self.retry_at = 0.0
        return OnReload.NOT_RUNNING

    def target(self, decision: OnReload) -> int:
        """The value of ``restarts`` at which a reload decided as ``decision`` is done."""
        return self.restarts + (2 if decision == OnReload.QUEUE else 1)

    def on_signalled(self) -> None:
        self._expect(Phase.RELOADING)
        self.signalled = True
        self.generation += 1

    def on_reload_timed_out(self) -> None:
        """New workers did not answer in time; the process lives on (gunicorn keeps trying)."""
        if self.phase == Phase.RELOADING:
            self.phase = Phase.RUNNING
            self.reload_queued = False
