"""Per-app log files with a size bound, and reading their last lines.

Each app has three logs in the node's log directory, named after its domain:
``<domain>.access.log`` (gunicorn's access lines), ``<domain>.error.log`` (the process's stderr:
tracebacks, gunicorn's messages, and the node's lines when the app cannot start) and
``<domain>.server.log`` (the process's stdout, e.g. prints, and the node's lifecycle lines).
The node reads the app's output through pipes and writes it here, so an app that writes 10 MB
to stdout costs at most ``2 * max_bytes`` of disk per log and one read buffer of memory.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from webapps.node.spec import log_stem

LOG_KINDS = ("access", "error", "server")
DEFAULT_MAX_BYTES = 1024 * 1024
MAX_TAIL_LINES = 1000
_TAIL_READ_BYTES = 256 * 1024


def log_path(log_dir: Path, name: str, kind: str) -> Path:
    if kind not in LOG_KINDS:
        raise ValueError(f"unknown log {kind!r}; one of {', '.join(LOG_KINDS)}")
    return log_dir / f"{log_stem(name)}.{kind}.log"


class RotatingLog:
    """Append-only file that moves itself to ``<path>.1`` when it would pass ``max_bytes``."""

    def __init__(self, path: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.path = path
        self.max_bytes = max_bytes
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        self._size = os.fstat(self._fd).st_size

    def write(self, data: bytes) -> None:
        if self._fd < 0:
            return  # closed at shutdown while a pipe still delivered its last bytes
        while data:
            if self._size >= self.max_bytes:
                self._rotate()
            room = self.max_bytes - self._size
            chunk, data = data[:room], data[room:]
            os.write(self._fd, chunk)
            self._size += len(chunk)

    def line(self, text: str) -> None:
        """A line from the node itself, time-stamped like gunicorn's."""
        stamp = time.strftime("%Y-%m-%d %H:%M:%S +0000", time.gmtime())
        self.write(f"[{stamp}] [node] {text}\n".encode())

    def _rotate(self) -> None:
        os.close(self._fd)
        os.replace(self.path, self.path.with_name(self.path.name + ".1"))
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        self._size = 0

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def tail(path: Path, lines: int = 50) -> str:
    """The last ``lines`` lines of a log (reaching into the rotated file when needed)."""
    lines = max(1, min(lines, MAX_TAIL_LINES))
    chunks: list[bytes] = []
    for candidate in (path, path.with_name(path.name + ".1")):
        try:
            with open(candidate, "rb") as fh:
                fh.seek(0, os.SEEK_END)
                size = fh.tell()
                fh.seek(max(0, size - _TAIL_READ_BYTES))
                chunks.insert(0, fh.read())
        except FileNotFoundError:
            continue
        if sum(c.count(b"\n") for c in chunks) > lines:
            break
    text = b"".join(chunks).decode("utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:])
