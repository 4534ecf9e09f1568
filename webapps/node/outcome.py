"""What a reload did, and the one sentence that says it (node answer, reload history, Web tab).

Three results, never confused:

- ``reloaded``: new workers of a new generation answer with the code on disk:
  "Reloaded on b2 in 212 ms (2 workers, generation 7)", or after a restart for changed
  settings "Restarted with the new settings (workers 2 -> 4) on b2 in 912 ms (4 workers, ...)";
- ``not_running``: nothing ran here, so nothing was restarted and no time is reported:
  "Not running on b2: the next request starts it with this code";
- ``failed``: "Reload failed on b2: ImportError: ... " (the exception line of the log tail when
  there is one, else what went wrong).

A reload for an app whose traffic the node's route table sends to another node is still carried
out, and its sentence ends with a warning naming that node.

Django-free (the node builds answers with it); the panel renders stored events with it too.
"""

from __future__ import annotations

import enum
import re
from typing import Any


class Result(enum.StrEnum):
    RELOADED = "reloaded"
    NOT_RUNNING = "not_running"
    FAILED = "failed"


# A traceback's last line: ``ModuleNotFoundError: No module named 'x'``, ``pkg.Error: why``.
_EXCEPTION_LINE = re.compile(r"^(?:[A-Za-z_][\w.]*\.)?[A-Za-z_]\w*(?:Error|Exception|Exit)\b.*$")
_MAX_CAUSE = 300


def cause(message: str, log_tail: str = "") -> str:
    """Why a reload failed, in one line: the last exception line of the log tail, with the
    node's message after it; the message alone when the tail names no exception."""
    found = ""
    for line in log_tail.splitlines():
        line = line.strip()
        if _EXCEPTION_LINE.match(line):
            found = line
    if found and message and message not in found:
        text = f"{found} ({message})"
    else:
        text = found or message or "no reason given"
    return text if len(text) <= _MAX_CAUSE else text[: _MAX_CAUSE - 1] + "…"


def misrouted_warning(backend: str, traffic_backend: str) -> str:
    return (
        f"warning: the route table sends this app's traffic to {traffic_backend}, not to "
        f"{backend}; the reload was carried out on {backend} anyway"
    )


def summary(
    result: str,
    backend: str,
    *,
    duration_ms: int | None = None,
    workers: int | None = None,
    generation: int | None = None,
    message: str = "",
    log_tail: str = "",
    traffic_backend: str = "",
) -> str:
    where = f" on {backend}" if backend else ""
    if result == Result.RELOADED:
        details = []
        if workers:
            details.append(f"{workers} worker{'s' if workers != 1 else ''}")
        if generation:
            details.append(f"generation {generation}")
        # A restart for changed settings says which: "Restarted with the new settings
        # (workers 2 -> 4) on b2 in ...".
        done = message[:1].upper() + message[1:] if message.startswith("restarted") else "Reloaded"
        text = f"{done}{where} in {duration_ms or 0} ms"
        if details:
            text += f" ({', '.join(details)})"
    elif result == Result.NOT_RUNNING:
        text = f"Not running{where}: the next request starts it with this code"
    else:
        text = f"Reload failed{where}: {cause(message, log_tail)}"
    if traffic_backend and traffic_backend != backend:
        text += f"; {misrouted_warning(backend, traffic_backend)}"
    return text


def summary_of(report: Any) -> str:
    """``summary`` of a recorded reload: anything with a reload report's attributes (``result``,
    ``backend``, ``duration_ms``, ``workers``, ``generation``, ``message``, ``log_tail``,
    ``misrouted``, ``traffic_backend``), such as the panel's result and its stored event."""
    return summary(
        report.result,
        report.backend,
        duration_ms=report.duration_ms,
        workers=report.workers,
        generation=report.generation,
        message=report.message,
        log_tail=report.log_tail,
        traffic_backend=report.traffic_backend if report.misrouted else "",
    )
