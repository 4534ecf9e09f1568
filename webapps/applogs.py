"""An app's logs, as the node that serves it has them, for the Web tab and the API.

The node does the reading (``webapps.node_client``); this module turns its answers, or the
reason there are none, into what a page shows, so that a node that cannot be reached costs the
page one line of explanation rather than an error. It also owns the public names of log files,
PythonAnywhere's: ``/var/log/<domain>.<kind>.log``, then ``.1``, then ``.<n>.gz``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from django.http import StreamingHttpResponse

from routing import InvalidHost, canonical_host
from webapps.node.control import ControlError
from webapps.node.logs import LOG_KINDS, log_suffix
from webapps.node_client import app_logs, log_files, read_log

LINES = 50
LOG_TITLES = (("error", "Error log"), ("server", "Server log"), ("access", "Access log"))


@dataclass(frozen=True)
class AppLogs:
    backend: str
    logs: list[tuple[str, str]] = field(default_factory=list)  # (title, text), in page order
    problem: str = ""


def logs_for(domain: str, backend: str) -> AppLogs:
    """``domain``'s log tails on ``backend`` (the backend the route table gives it)."""
    if not backend:
        return AppLogs(backend="", problem="No backend serves this app, so it has no logs yet.")
    try:
        tails = app_logs(domain, LINES, backend=backend)
    except (ControlError, OSError, ValueError) as exc:
        return AppLogs(backend=backend, problem=f"Could not read the logs on {backend}: {exc}")
    return AppLogs(
        backend=backend, logs=[(title, tails.get(kind, "")) for kind, title in LOG_TITLES]
    )


LOG_DIR = "/var/log/"
_NAME_RE = re.compile(
    r"(?P<domain>.+)\.(?P<kind>"
    + "|".join(LOG_KINDS)
    + r")\.log(?:\.(?P<one>1)|\.(?P<n>\d{1,2})\.gz)?"
)


def public_name(domain: str, kind: str, index: int) -> str:
    """A log file's name in the API and the Web tab: ``<domain>.<kind>.log[.1|.<n>.gz]``."""
    return f"{domain}.{kind}.log{log_suffix(index)}"


def parse_name(name: str) -> tuple[str, str, int] | None:
    """``(canonical domain, kind, index)`` of a public log name, or None if it names no log."""
    match = _NAME_RE.fullmatch(name)
    if match is None:
        return None
    index = 1 if match["one"] else int(match["n"]) if match["n"] else 0
    if match["n"] and index < 2:
        return None
    try:
        return canonical_host(match["domain"]), match["kind"], index
    except InvalidHost:
        return None


@dataclass(frozen=True)
class LogEntry:
    name: str  # public_name
    kind: str
    index: int
    size: int


@dataclass(frozen=True)
class LogListing:
    backend: str
    files: list[LogEntry] = field(default_factory=list)
    problem: str = ""


def listing_for(domain: str, backend: str) -> LogListing:
    """Every log file of ``domain`` on ``backend``, or the reason there is no list."""
    if not backend:
        return LogListing(backend="", problem="No backend serves this app, so it has no logs yet.")
    try:
        found = log_files(domain, backend=backend)
    except (ControlError, OSError, ValueError) as exc:
        return LogListing(backend=backend, problem=f"Could not list the logs on {backend}: {exc}")
    files = [
        LogEntry(public_name(domain, f["kind"], f["index"]), f["kind"], f["index"], f["size"])
        for f in found
    ]
    return LogListing(backend=backend, files=files)


def download_response(
    domain: str, kind: str, index: int, backend: str, name: str
) -> StreamingHttpResponse:
    """The whole file as an attachment, read from the node in bounded pieces.

    The first piece is read now, so a node that cannot be asked raises here (``ControlError``,
    ``OSError``) rather than in the middle of a response.
    """
    first, offset, size = read_log(domain, kind, index, backend=backend)

    def pieces() -> Iterator[bytes]:
        nonlocal offset
        data = first
        yield data
        while data and offset < size:
            data, offset, _ = read_log(domain, kind, index, offset, backend=backend)
            yield data

    kind_of = "application/gzip" if name.endswith(".gz") else "text/plain; charset=utf-8"
    response = StreamingHttpResponse(pieces(), content_type=kind_of)
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response
