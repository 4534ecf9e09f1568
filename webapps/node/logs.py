"""Per-app log files with a size bound, and reading their last lines.

Each app has three logs in the node's log directory, named after its domain:
``<domain>.access.log`` (gunicorn's access lines), ``<domain>.error.log`` (the process's stderr:
tracebacks, gunicorn's messages, and the node's lines when the app cannot start) and
``<domain>.server.log`` (the process's stdout, e.g. prints, and the node's lifecycle lines).
The node reads the app's output through pipes and writes it here. A log is rotated at
``max_bytes``: the current file becomes ``<file>.1``, the previous ``.1`` is compressed to
``<file>.2.gz``, older ones move up to ``<file>.<keep - 1>.gz`` and the oldest is dropped, so an
app that writes 10 MB to stdout costs at most twice ``max_bytes`` (the current file and ``.1``)
plus ``keep - 2`` compressed files of disk per log, and one read buffer of memory. The names are
PythonAnywhere's, so its client library reads a listing of them as it does there (index 0, 1,
2...).
"""

from __future__ import annotations

import gzip
import os
import time
from dataclasses import dataclass
from pathlib import Path

from webapps.node.spec import log_stem

LOG_KINDS = ("access", "error", "server")
DEFAULT_MAX_BYTES = 1024 * 1024
DEFAULT_KEEP = 5  # files per log: the current one, .1, .2.gz, .3.gz, .4.gz
MAX_READ_BYTES = 1024 * 1024  # one read_from answer
MAX_TAIL_LINES = 1000
_TAIL_READ_BYTES = 256 * 1024


def log_path(log_dir: Path, name: str, kind: str) -> Path:
    if kind not in LOG_KINDS:
        raise ValueError(f"unknown log {kind!r}; one of {', '.join(LOG_KINDS)}")
    return log_dir / f"{log_stem(name)}.{kind}.log"


def _open_log(path: Path) -> int:
    """The log file for appending, readable and writable by its group: the panel's group,
    given by the setgid log directory, reads logs and empties one the owner deletes."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o660)
    os.fchmod(fd, 0o660)  # whatever the node's umask
    return fd


def rotated_path(path: Path, index: int) -> Path:
    """The ``index``-th file of a log: 0 the current one, 1 ``.1``, then ``.<n>.gz``."""
    return path.with_name(path.name + log_suffix(index)) if index else path


class RotatingLog:
    """Append-only file that rotates itself (``rotated_path``) when it would pass ``max_bytes``."""

    def __init__(
        self, path: Path, max_bytes: int = DEFAULT_MAX_BYTES, keep: int = DEFAULT_KEEP
    ) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.keep = max(1, keep)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = _open_log(path)
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
        # The file may have been emptied meanwhile (a delete of the current log truncates it).
        self._size = os.fstat(self._fd).st_size
        if self._size < self.max_bytes:
            return
        os.close(self._fd)
        rotate_files(self.path, self.keep)
        self._fd = _open_log(self.path)
        self._size = 0

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def rotate_files(path: Path, keep: int) -> None:
    """Shift the history of ``path`` one step: drop the oldest, compress ``.1``, move to ``.1``."""
    if keep < 2:
        path.unlink(missing_ok=True)
        return
    for index in range(keep - 1, 1, -1):
        older = rotated_path(path, index)
        if older.exists():
            if index + 1 >= keep:
                older.unlink()
            else:
                os.replace(older, rotated_path(path, index + 1))
    first = rotated_path(path, 1)
    if first.exists():
        if keep > 2:
            target = rotated_path(path, 2)
            partial = target.with_name(target.name + ".tmp")
            with open(first, "rb") as src, gzip.open(partial, "wb", compresslevel=6) as dst:
                while chunk := src.read(256 * 1024):
                    dst.write(chunk)
            os.replace(partial, target)
        first.unlink()
    os.replace(path, first)


@dataclass(frozen=True)
class LogFile:
    kind: str
    index: int
    path: Path
    size: int
    modified: float


def log_suffix(index: int) -> str:
    """What ``rotated_path`` appends to a log's name: "", ".1", ".<n>.gz"."""
    return "" if index == 0 else ".1" if index == 1 else f".{index}.gz"


def log_files(log_dir: Path, name: str, keep: int = DEFAULT_KEEP) -> list[LogFile]:
    """Every log file of the app that exists, by kind then index (0 first)."""
    found = []
    for kind in LOG_KINDS:
        current = log_path(log_dir, name, kind)
        for index in range(max(1, keep)):
            path = rotated_path(current, index)
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            found.append(LogFile(kind, index, path, st.st_size, st.st_mtime))
    return found


def delete_log(log_dir: Path, name: str, kind: str, index: int) -> bool:
    """Delete one log file; the current one (index 0) is emptied, since the node writes to it.

    False when there was no such file.
    """
    path = rotated_path(log_path(log_dir, name, kind), index)
    try:
        if index == 0:
            os.truncate(path, 0)
        else:
            path.unlink()
    except FileNotFoundError:
        return False
    return True


def read_from(path: Path, offset: int, limit: int = MAX_READ_BYTES) -> tuple[bytes, int, int]:
    """``(data, next offset, size)``: up to ``limit`` bytes of ``path`` from ``offset``.

    A file shorter than ``offset`` was rotated or emptied: reading starts again at 0. A missing
    file reads as empty.
    """
    limit = max(0, min(limit, MAX_READ_BYTES))
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if offset > size or offset < 0:
                offset = 0
            fh.seek(offset)
            data = fh.read(limit)
    except FileNotFoundError:
        return b"", 0, 0
    return data, offset + len(data), size


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
