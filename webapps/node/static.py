"""Static files mappings: the node serves them itself, never through the app.

A mapping is a URL prefix and a directory inside the owner's home (``StaticMapping`` in
``webapps.node.spec``, carried by the app's ``AppSpec``, so it changes with the app lookup and
without a reload). The pure core turns a request into a decision; the shell (``StaticFiles``)
opens the file and renders it.

Rules (the core, pure functions):

1. **Prefixes are whole segments.** ``/static/`` (or ``/static``) matches ``/static`` and
   ``/static/...``, never ``/staticky``. The longest matching prefix wins. A request that
   matches a mapping is answered by the node whatever happens: the file, 304, 206, 416, 404 or
   405; it never falls through to the app.
2. **The path is checked before it is decoded.** An encoded ``/`` or ``\\`` (``%2f``, ``%5c``),
   an encoded NUL, a raw ``\\`` or NUL, an invalid escape: 404. After decoding, a ``.`` or
   ``..`` segment (``%2e%2e`` included): 404. Empty segments (``//``) are dropped.
3. **Nothing outside the mapped directory is read.** The directory is opened from the owner's
   home with no symlink followed at all (``RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS``), and the
   file from that directory with ``RESOLVE_BENEATH``: a symlink inside the directory is followed
   only when it is relative and stays inside (an absolute one is refused), by the kernel, in the
   same system call that opens the file (``openat2``: no window between a check and the open).
   Without ``openat2`` the real path is resolved and checked, and the file opened with
   ``O_NOFOLLOW``. Only regular files are served.
4. **Conditional requests.** ``If-None-Match`` (weak comparison, ``*``) wins over
   ``If-Modified-Since``; a match answers 304 with the validators and no body.
5. **Ranges.** One range (``bytes=a-b``, ``a-``, ``-n``) answers 206 with ``Content-Range``; an
   unsatisfiable one 416 with ``Content-Range: bytes */size``; several ranges or a malformed
   header are ignored (200, the whole file). ``If-Range`` that does not match the ETag or the
   exact ``Last-Modified`` date serves the whole file.
6. **Precompressed siblings.** Without a ``Range``, when the client accepts ``br`` (then
   ``gzip``) and ``<file>.br`` (``<file>.gz``) is a regular file beside it, that file is served
   with ``Content-Encoding``; every answer says ``Vary: Accept-Encoding``.
7. **Headers.** ``Content-Type`` from the name (``mimetypes``; text gets ``charset=utf-8``),
   ``ETag`` (size and mtime), ``Last-Modified``, ``Accept-Ranges: bytes``,
   ``X-Content-Type-Options: nosniff`` and ``Cache-Control``: the mapping's own or
   ``DEFAULT_CACHE_CONTROL``.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import mimetypes
import os
import re
import stat
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from email.utils import formatdate, parsedate_to_datetime
from pathlib import Path

from proxy.engine import Answer, FileBody
from webapps.node.spec import AppSpec, StaticMapping

__all__ = [
    "DEFAULT_CACHE_CONTROL",
    "MAX_URL_PREFIX",
    "Decision",
    "FileInfo",
    "InvalidMapping",
    "StaticFiles",
    "StaticMapping",
    "check_cache_control",
    "check_url_prefix",
    "decide",
    "match",
    "split_target",
]

DEFAULT_CACHE_CONTROL = "public, max-age=60"
MAX_URL_PREFIX = 255
MAX_CACHE_CONTROL = 200
ALLOW = b"GET, HEAD"
MAX_CACHED_DIRS = 1024  # open directory fds kept (each for cache_seconds)

_URL_PREFIX_RE = re.compile(r"/(?:[A-Za-z0-9._~!$&'()*+,;=:@-]+/?)*")
_CACHE_CONTROL_RE = re.compile(r"[A-Za-z0-9 ,=\-_\"]+")
_ESCAPE_RE = re.compile(rb"%([0-9A-Fa-f]{2})")
_BAD_ESCAPES = (b"%2f", b"%2F", b"%5c", b"%5C", b"%00")


class InvalidMapping(ValueError):
    """A mapping's URL prefix or Cache-Control that the node cannot serve; the message says why."""


# --- the rules a mapping must follow (the panel validates with them) -----------------------


def check_url_prefix(raw: object) -> str:
    """``raw`` when it is a URL path prefix a node can match, else ``InvalidMapping`` saying why.

    A path: starts with ``/``; ASCII letters, digits and ``._~!$&'()*+,;=:@-`` in segments;
    no ``.``/``..`` segment, no empty segment, no ``%``, ``?``, ``#``, ``\\`` or spaces.
    """
    if not isinstance(raw, str):
        raise InvalidMapping("the URL must be a string")
    if not raw.startswith("/"):
        raise InvalidMapping(f"the URL {raw!r} is not a path: it must start with '/'")
    if len(raw) > MAX_URL_PREFIX:
        raise InvalidMapping(f"the URL is longer than {MAX_URL_PREFIX} characters")
    for char, what in (("?", "a query"), ("#", "a fragment"), ("%", "an escape"), ("\\", "'\\'")):
        if char in raw:
            raise InvalidMapping(f"the URL {raw!r} is not a path: it contains {what}")
    segments = raw.strip("/").split("/") if raw != "/" else []
    if any(s in ("", ".", "..") for s in segments):
        raise InvalidMapping(f"the URL {raw!r} has an empty, '.' or '..' segment")
    if not _URL_PREFIX_RE.fullmatch(raw):
        raise InvalidMapping(
            f"the URL {raw!r} is not a path: use ASCII letters, digits and ._~-!$&'()*+,;=:@"
        )
    return raw


def check_cache_control(raw: object) -> str:
    """A ``Cache-Control`` value an owner may set ("" means the default)."""
    if raw is None or raw == "":
        return ""
    if not isinstance(raw, str):
        raise InvalidMapping("Cache-Control must be a string")
    if len(raw) > MAX_CACHE_CONTROL or not _CACHE_CONTROL_RE.fullmatch(raw):
        raise InvalidMapping(
            f"Cache-Control {raw!r} must be directives like 'public, max-age=3600' "
            f'(letters, digits, spaces, , = - _ ", at most {MAX_CACHE_CONTROL} characters)'
        )
    return raw.strip()


# --- the pure core ----------------------------------------------------------------------------


def split_target(target: bytes) -> list[bytes] | None:
    """The decoded path segments of a request target, or None when it must be refused (404)."""
    path = target.split(b"?", 1)[0].split(b"#", 1)[0]
    if not path.startswith(b"/") or b"\\" in path or b"\x00" in path:
        return None
    if b"%" in path:
        if any(bad in path for bad in _BAD_ESCAPES):
            return None
        if path.count(b"%") != len(_ESCAPE_RE.findall(path)):
            return None  # a '%' that starts no valid escape
        path = _ESCAPE_RE.sub(lambda m: bytes((int(m[1], 16),)), path)
        if b"\\" in path or b"\x00" in path:
            return None
    segments = [s for s in path.split(b"/") if s]
    if any(s == b"." or s == b".." for s in segments):
        return None
    return segments


def lookup(
    mappings: Iterable[StaticMapping], target: bytes
) -> tuple[StaticMapping, list[bytes] | None] | None:
    """The mapping a request target falls under and the segments after its prefix.

    ``None``: no mapping (the app serves it). ``(mapping, None)``: under a mapping but refused by
    rule 2 (a 404). Refused targets are matched on their raw, undecoded segments.
    """
    segments = split_target(target)
    if segments is not None:
        return match(mappings, segments)
    raw = [s for s in target.split(b"?", 1)[0].split(b"/") if s]
    hit = match(mappings, raw)
    return (hit[0], None) if hit is not None else None


@functools.lru_cache(maxsize=4096)
def _prefix(mapping: StaticMapping) -> tuple[bytes, ...]:
    return tuple(s.encode() for s in mapping.url.split("/") if s)


def match(
    mappings: Iterable[StaticMapping], segments: Sequence[bytes]
) -> tuple[StaticMapping, list[bytes]] | None:
    """The mapping with the longest prefix of ``segments`` and the segments after it, or None."""
    best: tuple[StaticMapping, list[bytes]] | None = None
    best_len = -1
    for mapping in mappings:
        prefix = _prefix(mapping)
        n = len(prefix)
        if n > best_len and tuple(segments[:n]) == prefix:
            best, best_len = (mapping, list(segments[n:])), n
    return best


@dataclass(frozen=True, slots=True)
class FileInfo:
    size: int
    mtime: float  # seconds since the epoch
    etag: bytes
    encoding: bytes = b""  # b"br" or b"gzip" for a precompressed sibling


def file_info(st: os.stat_result, encoding: bytes = b"") -> FileInfo:
    etag = b'"%x-%x"' % (st.st_size, st.st_mtime_ns)
    return FileInfo(st.st_size, st.st_mtime, etag, encoding)


@dataclass(frozen=True, slots=True)
class Decision:
    status: int
    headers: tuple[tuple[bytes, bytes], ...]
    offset: int = 0
    length: int = 0  # bytes of the file to send (0 for 304, 416 and HEAD)
    announced: int = 0  # the Content-Length: what a GET gets (also for HEAD and 304)


def _etags(value: bytes) -> list[bytes]:
    return [t.strip().removeprefix(b"W/") for t in value.split(b",") if t.strip()]


def _http_date(value: bytes) -> float | None:
    try:
        return parsedate_to_datetime(value.decode("latin-1")).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _range(value: bytes, size: int) -> tuple[int, int] | bool | None:
    """``(start, end inclusive)``, ``False`` when unsatisfiable, ``None`` to ignore the header."""
    unit, _, spec = value.partition(b"=")
    if unit.strip().lower() != b"bytes" or b"," in spec:
        return None
    first, dash, last = spec.strip().partition(b"-")
    if not dash or not (first.isdigit() or last.isdigit()):
        return None
    if (first and not first.isdigit()) or (last and not last.isdigit()):
        return None
    if not first:  # the last n bytes
        n = int(last)
        if n == 0 or size == 0:
            return False
        return max(0, size - n), size - 1
    start = int(first)
    end = int(last) if last else size - 1
    if last and end < start:
        return None  # invalid: ignored
    if start >= size:
        return False
    return start, min(end, size - 1)


def decide(
    method: bytes,
    request: dict[bytes, bytes],
    info: FileInfo,
    *,
    content_type: bytes,
    cache_control: bytes,
) -> Decision:
    """The answer to a GET or HEAD of a file. ``request``: lower-cased header name -> value."""
    last_modified = _last_modified(int(info.mtime))
    common = [
        (b"Content-Type", content_type),
        (b"ETag", info.etag),
        (b"Last-Modified", last_modified),
        (b"Cache-Control", cache_control),
        (b"Vary", b"Accept-Encoding"),
        (b"X-Content-Type-Options", b"nosniff"),
    ]
    inm = request.get(b"if-none-match")
    if inm is not None:
        tags = _etags(inm)
        if b"*" in tags or info.etag in tags:
            return Decision(304, tuple(common[:5]), announced=info.size)
    elif (ims := request.get(b"if-modified-since")) is not None:
        since = _http_date(ims)
        if since is not None and int(info.mtime) <= since:
            return Decision(304, tuple(common[:5]), announced=info.size)
    if info.encoding:
        common.append((b"Content-Encoding", info.encoding))
    else:
        common.append((b"Accept-Ranges", b"bytes"))
    send = method != b"HEAD"
    raw_range = request.get(b"range")
    if raw_range is not None and not info.encoding:
        if_range = request.get(b"if-range")
        honour = if_range is None or if_range.strip() in (info.etag, last_modified)
        wanted = _range(raw_range, info.size) if honour else None
        if wanted is False:
            headers = (*common, (b"Content-Range", b"bytes */%d" % info.size))
            return Decision(416, headers)
        if wanted is not None:
            start, end = wanted
            length = end - start + 1
            headers = (*common, (b"Content-Range", b"bytes %d-%d/%d" % (start, end, info.size)))
            return Decision(206, headers, start, length if send else 0, length)
    return Decision(200, tuple(common), 0, info.size if send else 0, info.size)


@functools.lru_cache(maxsize=4096)
def _last_modified(seconds: int) -> bytes:
    return formatdate(seconds, usegmt=True).encode()


def accepted_encodings(value: bytes | None) -> tuple[bytes, ...]:
    """``br`` and/or ``gzip`` when ``Accept-Encoding`` allows them, in the order to try."""
    if not value:
        return ()
    allowed: dict[bytes, bool] = {}
    for item in value.lower().split(b","):
        name, _, params = item.strip().partition(b";")
        q = 1.0
        params = params.strip()
        if params.startswith(b"q="):
            try:
                q = float(params[2:])
            except ValueError:
                q = 0.0
        allowed[name.strip()] = q > 0
    star = allowed.get(b"*", False)
    return tuple(enc for enc in (b"br", b"gzip") if allowed.get(enc, star))


_SUFFIX = {b"br": b".br", b"gzip": b".gz"}
_TEXT_TYPES = ("application/javascript", "application/json", "application/xml", "image/svg+xml")


def content_type_for(name: str) -> bytes:
    return _content_type(os.path.splitext(name)[1].lower() or name)


@functools.lru_cache(maxsize=1024)
def _content_type(suffix: str) -> bytes:
    kind, _ = mimetypes.guess_type("x" + suffix if suffix.startswith(".") else suffix, strict=False)
    if kind is None:
        return b"application/octet-stream"
    if kind.startswith("text/") or kind in _TEXT_TYPES:
        return f"{kind}; charset=utf-8".encode()
    return kind.encode()


# --- opening files without leaving the mapped directory ------------------------------------

_RESOLVE_NO_MAGICLINKS = 0x02
_RESOLVE_NO_SYMLINKS = 0x04
_RESOLVE_BENEATH = 0x08
_SYS_OPENAT2 = 437  # the same number on every Linux architecture


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


_HOW_SIZE = ctypes.sizeof(_OpenHow)


class _Opener:
    """``openat2`` through libc's ``syscall``; ``None`` from ``open`` when it is unavailable."""

    def __init__(self) -> None:
        self.available = False
        try:
            self._syscall = ctypes.CDLL(None, use_errno=True).syscall
        except (OSError, AttributeError):
            return
        probe = self.open(os.open("/", os.O_PATH | os.O_DIRECTORY), b".", os.O_PATH, 0, close=True)
        self.available = probe is not None

    _hows: dict[tuple[int, int], _OpenHow] = {}

    def open(self, dirfd: int, path: bytes, flags: int, resolve: int, *, close=False) -> int | None:
        how = self._hows.get((flags, resolve))
        if how is None:
            how = self._hows[(flags, resolve)] = _OpenHow(flags | os.O_CLOEXEC, 0, resolve)
        try:
            fd = self._syscall(_SYS_OPENAT2, dirfd, path, ctypes.byref(how), _HOW_SIZE)
        finally:
            if close:
                os.close(dirfd)
        if fd >= 0:
            return fd
        err = ctypes.get_errno()
        if err in (errno.ENOSYS, errno.EPERM) and not self.available:
            return None
        raise OSError(err, os.strerror(err))


class StaticFiles:
    """The I/O shell: opens what the core allows and says what to send.

    ``home_root``: the platform's homes; a mapping's directory is opened from
    ``HOME_ROOT/<owner lower-cased>/`` and must lie inside it.
    """

    def __init__(
        self,
        home_root: Path,
        *,
        cache_seconds: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.home_root = Path(home_root)
        self.cache_seconds = cache_seconds
        self.clock = clock
        self._homes: dict[str, bytes] = {}
        self._opener = _Opener()
        # (home, mapped directory) -> (expiry, O_PATH fd opened beneath the home, no symlinks).
        # An fd keeps naming the directory it was opened on, so a directory swapped for a
        # symlink afterwards is not followed; it is noticed when the entry expires.
        self._dirs: dict[tuple[bytes, bytes], tuple[float, int]] = {}

    def _home(self, owner: str) -> bytes:
        home = self._homes.get(owner)
        if home is None:
            if len(self._homes) > 10_000:
                self._homes.clear()
            home = os.fsencode(os.path.realpath(self.home_root / owner.lower()))
            self._homes[owner] = home
        return home

    def open_file(self, owner: str, mapping: StaticMapping, rest: Sequence[bytes]) -> int | None:
        """A read-only fd of the mapped file, or None (404): missing, outside, not a file."""
        opened = self.open_stat(owner, mapping, rest)
        return opened[0] if opened is not None else None

    def open_stat(
        self, owner: str, mapping: StaticMapping, rest: Sequence[bytes]
    ) -> tuple[int, os.stat_result] | None:
        """``open_file`` and the file's ``fstat``."""
        if not owner or not rest:
            return None
        home = self._home(owner)
        directory = os.fsencode(mapping.path)
        if not directory.startswith(home + b"/"):
            return None
        relative_dir = directory[len(home) + 1 :]
        relative = b"/".join(rest)
        try:
            if self._opener.available:
                fd = self._open_beneath(home, relative_dir, relative)
            else:
                fd = self._open_checked(home, directory, relative)
        except OSError:
            return None
        if fd is None:
            return None
        try:
            st = os.fstat(fd)
            if stat.S_ISREG(st.st_mode):
                return fd, st
        except OSError:
            pass
        os.close(fd)
        return None

    def _dir_fd(self, home: bytes, relative_dir: bytes) -> int | None:
        key = (home, relative_dir)
        now = self.clock()
        hit = self._dirs.get(key)
        if hit is not None:
            if hit[0] > now:
                return hit[1]
            del self._dirs[key]
            os.close(hit[1])
        home_fd = os.open(home, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            dir_fd = self._opener.open(
                home_fd,
                relative_dir,
                os.O_PATH | os.O_DIRECTORY,
                _RESOLVE_BENEATH | _RESOLVE_NO_SYMLINKS | _RESOLVE_NO_MAGICLINKS,
            )
        finally:
            os.close(home_fd)
        if dir_fd is None or self.cache_seconds <= 0:
            return dir_fd
        if len(self._dirs) >= MAX_CACHED_DIRS:
            oldest = next(iter(self._dirs))
            os.close(self._dirs.pop(oldest)[1])
        self._dirs[key] = (now + self.cache_seconds, dir_fd)
        return dir_fd

    def _open_beneath(self, home: bytes, relative_dir: bytes, relative: bytes) -> int | None:
        dir_fd = self._dir_fd(home, relative_dir)
        if dir_fd is None:
            return None
        try:
            return self._opener.open(
                dir_fd,
                relative,
                os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK,
                _RESOLVE_BENEATH | _RESOLVE_NO_MAGICLINKS,
            )
        finally:
            if self.cache_seconds <= 0:
                os.close(dir_fd)

    def close(self) -> None:
        for _, fd in self._dirs.values():
            os.close(fd)
        self._dirs.clear()

    @staticmethod
    def _open_checked(home: bytes, directory: bytes, relative: bytes) -> int | None:
        real_dir = os.path.realpath(directory)
        if real_dir != directory:  # the mapped directory may not be reached through a symlink
            return None
        real = os.path.realpath(os.path.join(directory, relative))
        if not real.startswith(real_dir + b"/"):
            return None
        return os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)

    def serve(
        self,
        owner: str,
        mapping: StaticMapping,
        rest: Sequence[bytes],
        method: bytes,
        request: dict[bytes, bytes],
    ) -> tuple[Decision, int | None]:
        """The decision and the fd to send from (None when there is no body to send).

        A 404 is ``Decision(404, ...)``; the caller owns (and closes) a returned fd.
        """
        opened = self.open_stat(owner, mapping, rest)
        if opened is None:
            return Decision(404, ()), None
        fd, st = opened
        encoding = b""
        if b"range" not in request and b"accept-encoding" in request:
            for enc in accepted_encodings(request.get(b"accept-encoding")):
                sibling = self.open_stat(owner, mapping, [*rest[:-1], rest[-1] + _SUFFIX[enc]])
                if sibling is not None:
                    os.close(fd)
                    (fd, st), encoding = sibling, enc
                    break
        info = file_info(st, encoding)
        decision = decide(
            method,
            request,
            info,
            content_type=content_type_for(os.fsdecode(rest[-1])),
            cache_control=(mapping.cache_control or DEFAULT_CACHE_CONTROL).encode(),
        )
        if not decision.length:
            os.close(fd)
            return decision, None
        return decision, fd


_HTML = b"text/html; charset=utf-8"
_NOT_FOUND = b"<!doctype html><title>404 Not Found</title><h1>Not Found</h1>\n"
_NOT_ALLOWED = b"<!doctype html><title>405 Method Not Allowed</title><h1>Not Allowed</h1>\n"
SMALL_FILE = 16 * 1024  # read into the answer (one write with its head); larger: sendfile


def answer_for(
    files: StaticFiles, spec: AppSpec, method: bytes, target: bytes, headers
) -> Answer | None:
    """The node's answer to a request under one of the app's static mappings, or None."""
    hit = lookup(spec.static, target)
    if hit is None:
        return None
    mapping, rest = hit
    if method not in (b"GET", b"HEAD"):
        return Answer(405, _NOT_ALLOWED, _HTML, ((b"Allow", ALLOW),))
    if rest is None:
        return Answer(404, _NOT_FOUND, _HTML)
    decision, fd = files.serve(spec.owner, mapping, rest, method, request_fields(headers))
    if decision.status == 404:
        return Answer(404, _NOT_FOUND, _HTML)
    content_type, extra = decision.headers[0][1], decision.headers[1:]
    if fd is None:
        return Answer(decision.status, b"", content_type, extra, length=decision.announced)
    if decision.length <= SMALL_FILE:
        try:
            body = os.pread(fd, decision.length, decision.offset)
        finally:
            os.close(fd)
        if len(body) == decision.length:
            return Answer(decision.status, body, content_type, extra)
        return Answer(404, _NOT_FOUND, _HTML)  # it shrank between fstat and read
    return Answer(
        decision.status,
        b"",
        content_type,
        extra,
        file=FileBody(fd, decision.offset, decision.length),
    )


def request_fields(headers: Iterable[tuple[bytes, bytes]]) -> dict[bytes, bytes]:
    """The request fields the core reads, by lower-cased name."""
    wanted = {b"if-none-match", b"if-modified-since", b"range", b"if-range", b"accept-encoding"}
    out: dict[bytes, bytes] = {}
    for name, value in headers:
        lower = name.lower()
        if lower in wanted:
            out[lower] = value
    return out
