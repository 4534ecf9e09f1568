"""gunicorn settings the node gives every app it runs (``gunicorn --config <this file>``).

It runs inside the app's own Python, perhaps a virtualenv with another gunicorn, so it uses the
standard library only. gunicorn ignores names it does not know, so newer settings are safe.

Every worker, before it imports the app (``post_fork``):

- reads its **generation** from a file the node passes by descriptor (the node writes the new
  number there before each spawn and HUP), and tags its readiness line and every response
  (``X-App-Generation``) with it;
- loads every module that is not the standard library's or site-packages' with a
  **hash-checked bytecode cache** (PEP 552): a cached entry is used only when it was compiled
  from exactly the bytes on disk now. The ordinary cache trusts a source's mtime in whole
  seconds and its size, so an edit that keeps the size within the second of the last import
  would load the old code. Libraries keep the ordinary cache (they change only on install).
"""

import contextlib
import importlib.machinery
import importlib.util
import marshal
import os
import site
import sys
import sysconfig
import types

READY_FD_ENV = "HOSTING_NODE_READY_FD"
GENERATION_FD_ENV = "HOSTING_NODE_GENERATION_FD"
GENERATION_HEADER = "X-App-Generation"
GENERATION_BYTES = 20  # the node writes the number zero-padded to this width

# gunicorn >= 24 opens a control socket under $HOME by default; apps of one owner would share it.
control_socket_disable = True

# The app's socket is born 0700 in its own 0700 directory: only the app and the node reach it.
umask = 0o077

# Forwarded-header handling pinned off: gunicorn trusts every unix-socket peer, so by default a
# client's SCRIPT_NAME or PATH_INFO header (passed on by a proxy) would rewrite the WSGI
# environment. The node's proxy is the only peer and says everything gunicorn needs in plain
# headers; the one scheme header believed is the X-Forwarded-Proto the proxies write themselves.
forwarded_allow_ips = ""
forwarder_headers = ""
header_map = "drop"
proxy_protocol = False
proxy_allow_ips = ""
secure_scheme_headers = {"X-FORWARDED-PROTO": "https"}

# PEP 552 flags: hash-based (bit 0) and checked against the source at every import (bit 1).
_CHECKED_HASH = (0b11).to_bytes(4, "little")
_HEADER = 16  # magic, flags, 8-byte source hash


def on_starting(server):
    """In the master, once: find the library roots, so no worker spends time on it."""
    library_roots()


def on_reload(server):
    library_roots()  # the settings were read anew on HUP: warm this copy too


def post_fork(server, worker):
    """In the new worker, before the app is imported: its generation and fresh-code imports."""
    worker.hosting_generation = _read_generation()
    install_hash_checked_imports()


def post_worker_init(worker):
    """Tell the node that this worker has imported the app and is about to serve.

    The node counts these lines (``<pid> <generation>``) to know when a start or a reload has
    fresh workers answering. Every response of the worker names its generation.
    """
    generation = getattr(worker, "hosting_generation", 0)
    worker.wsgi = with_generation_header(worker.wsgi, generation)
    fd = os.environ.get(READY_FD_ENV)
    if fd:
        os.write(int(fd), b"%d %d\n" % (os.getpid(), generation))


def _read_generation():
    fd = os.environ.get(GENERATION_FD_ENV)
    if not fd:
        return 0
    try:
        raw = os.pread(int(fd), GENERATION_BYTES, 0)
        os.close(int(fd))  # the master keeps its copy for the workers it forks later
    except (OSError, ValueError):
        return 0
    return int(raw) if raw.strip().isdigit() else 0


def with_generation_header(app, generation):
    """``app`` answering with ``X-App-Generation: <generation>`` (the app's own one replaced)."""
    header = (GENERATION_HEADER, str(generation))
    lowered = GENERATION_HEADER.lower()

    def application(environ, start_response):
        def start(status, headers, exc_info=None):
            headers = [h for h in headers if h[0].lower() != lowered]
            headers.append(header)
            return start_response(status, headers, exc_info)

        return app(environ, start)

    return application


class HashCheckedLoader(importlib.machinery.SourceFileLoader):
    """A source loader whose bytecode cache entries are checked against the source's hash."""

    def get_code(self, fullname):
        path = self.get_filename(fullname)
        source = self.get_data(path)
        digest = importlib.util.source_hash(source)
        try:
            cache = importlib.util.cache_from_source(path)
        except NotImplementedError:  # no cache tag: this Python writes no bytecode
            cache = None
        if cache is not None:
            code = _cached_code(cache, digest)
            if code is not None:
                return code
        code = self.source_to_code(source, path)
        if cache is not None and not sys.dont_write_bytecode:
            _write_cache(cache, path, digest, code)
        return code


def _cached_code(cache, digest):
    try:
        with open(cache, "rb") as f:
            data = f.read()
    except OSError:
        return None
    if (
        data[:4] != importlib.util.MAGIC_NUMBER
        or data[4:8] != _CHECKED_HASH
        or data[8:16] != digest
    ):
        return None
    try:
        code = marshal.loads(memoryview(data)[_HEADER:])
    except (EOFError, ValueError, TypeError):
        return None
    return code if isinstance(code, types.CodeType) else None


def _write_cache(cache, source_path, digest, code):
    """Write the entry atomically (a rename); a cache that cannot be written is skipped."""
    data = importlib.util.MAGIC_NUMBER + _CHECKED_HASH + digest + marshal.dumps(code)
    temp = f"{cache}.{os.getpid()}.tmp"
    try:
        mode = (os.stat(source_path).st_mode & 0o666) | 0o200
        os.makedirs(os.path.dirname(cache), exist_ok=True)
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        os.replace(temp, cache)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(temp)


_library_roots = None


def library_roots():
    """Where the standard library and installed packages live: they keep the ordinary cache.

    Computed once per process (``sysconfig`` takes some milliseconds); workers inherit it.
    """
    global _library_roots
    if _library_roots is None:
        _library_roots = _find_library_roots()
    return _library_roots


def _find_library_roots():
    roots = set()
    paths = sysconfig.get_paths()
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        if paths.get(key):
            roots.add(paths[key])
    if hasattr(site, "getsitepackages"):
        roots.update(site.getsitepackages())
    user_site = getattr(site, "getusersitepackages", lambda: None)()
    if user_site:
        roots.add(user_site)
    return tuple(sorted({os.path.realpath(r) for r in roots}))


def is_library_path(path, roots):
    real = os.path.realpath(path or os.getcwd())
    parts = real.split(os.sep)
    if "site-packages" in parts or "dist-packages" in parts:
        return True
    return any(real == root or real.startswith(root + os.sep) for root in roots)


def install_hash_checked_imports():
    """Import everything outside ``library_roots()`` through ``HashCheckedLoader``.

    A path hook in front of the ordinary one, for directories outside the libraries; finders
    the master made for such directories (with their cached listings) are dropped so they are
    made anew with it.
    """
    roots = library_roots()
    fresh = importlib.machinery.FileFinder.path_hook(
        (importlib.machinery.ExtensionFileLoader, importlib.machinery.EXTENSION_SUFFIXES),
        (HashCheckedLoader, importlib.machinery.SOURCE_SUFFIXES),
        (importlib.machinery.SourcelessFileLoader, importlib.machinery.BYTECODE_SUFFIXES),
    )

    def hook(path):
        if is_library_path(path, roots):
            raise ImportError("a library path: the ordinary finder serves it")
        return fresh(path)

    hook.hosting_hash_checked = True
    if not any(getattr(h, "hosting_hash_checked", False) for h in sys.path_hooks):
        sys.path_hooks.insert(0, hook)
    for entry in list(sys.path_importer_cache):
        if not is_library_path(entry, roots):
            del sys.path_importer_cache[entry]
