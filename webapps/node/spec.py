"""What a node needs to know to run one app, and how that becomes a gunicorn command line.

``AppSpec`` is plain data (built from a ``WebApp`` row, or for the panel itself); the helpers
here turn it into the argv, working directory and environment of the app's process. User apps
get a clean environment: nothing of the node's (the panel's secrets, database and Redis URLs)
leaks into them.
"""

from __future__ import annotations

import hashlib
import keyword
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from webapps.node import gunicorn_conf, pythons

# gunicorn settings every app gets; it runs in the app's own Python (maybe a virtualenv), so it
# uses the standard library only.
GUNICORN_CONF = Path(gunicorn_conf.__file__).resolve()
# Names the node and that file share; the file owns them (it can import nothing of ours).
READY_FD_ENV = gunicorn_conf.READY_FD_ENV
GENERATION_FD_ENV = gunicorn_conf.GENERATION_FD_ENV
GENERATION_HEADER = gunicorn_conf.GENERATION_HEADER
GENERATION_BYTES = gunicorn_conf.GENERATION_BYTES
DEFAULT_WSGI_ENTRY = "wsgi:application"
# The one WSGI-entry rule (the panel validates with ``check_wsgi_entry`` too): ``module:callable``,
# a dotted module and one callable name, ASCII identifiers. gunicorn imports the module and looks
# the name up in it (a dotted name after the colon is refused by gunicorn); the entry is one argv
# element, so it can never start with "-" (which gunicorn would read as an option).
_IDENTIFIER = r"[A-Za-z_][A-Za-z0-9_]*"
WSGI_ENTRY_PATTERN = rf"{_IDENTIFIER}(?:\.{_IDENTIFIER})*:{_IDENTIFIER}"
WSGI_ENTRY_RE = re.compile(WSGI_ENTRY_PATTERN)
WSGI_ENTRY_HELP = f"module:callable, for example {DEFAULT_WSGI_ENTRY} or mysite.wsgi:app"
# How a user app's interpreter starts gunicorn: the node's server directory (the argument after
# the code) goes to the *end* of sys.path, after everything site found, so the app's own
# packages (a gunicorn of its virtualenv too) come first and the node's copy only fills in.
SERVER_BOOT = (
    "import sys; sys.path.append(sys.argv.pop(1)); sys.argv[0] = 'gunicorn'; "
    "from gunicorn.app.wsgiapp import run; run()"
)
# An app's gunicorn when its owner chose nothing: two sync workers and the node's request timeout
# (docs/node.md, "App server settings").
DEFAULT_WORKERS = 2
DEFAULT_THREADS = 1
# The shortest worker timeout an app may have: gunicorn counts a worker's import of the app
# against it, so less kills workers of an app that imports for a few seconds.
MIN_TIMEOUT = 5
# Linux limits a unix socket path to 107 bytes.
MAX_SOCKET_PATH = 107
# A file name is at most 255 bytes; the longest log suffix is ".access.log".
_MAX_LOG_STEM = 200


class SourceRefused(ValueError):
    """The app may not run from where its settings point (escape from home, missing dir...)."""


class InvalidWsgiEntry(ValueError):
    """A WSGI entry the node cannot start; the message names the entry and the problem."""


def is_wsgi_entry(raw: object) -> bool:
    """True for an entry the node can start (``WSGI_ENTRY_PATTERN``, callable not a keyword)."""
    if not isinstance(raw, str) or not WSGI_ENTRY_RE.fullmatch(raw):
        return False
    # gunicorn parses the callable as a Python expression: ``wsgi:class`` or ``wsgi:None``
    # match the pattern but are not a name to it.
    return not keyword.iskeyword(raw.rpartition(":")[2])


def check_wsgi_entry(raw: object) -> str:
    """``raw`` when the node can start it (``is_wsgi_entry``), else ``InvalidWsgiEntry`` saying why.

    Exact: no stripping; the caller decides what to do with surrounding spaces.
    """
    if isinstance(raw, str) and is_wsgi_entry(raw):
        return raw
    raise InvalidWsgiEntry(
        f"the WSGI entry {raw!r} cannot be started ({_wsgi_entry_problem(raw)}); "
        f"it must look like {WSGI_ENTRY_HELP}"
    )


def _wsgi_entry_problem(raw: object) -> str:
    if not isinstance(raw, str):
        return "it is not text"
    module, colon, name = raw.rpartition(":")
    if not colon:
        return "it has no ':callable' part"
    if ":" in module:
        return "it has more than one ':'"
    if not module:
        return "it names no module before the ':'"
    if not name:
        return "it names no callable after the ':'"
    if "." in name:
        return f"the callable {name!r} must be one name, without dots"
    if not raw.isascii():
        return "module and callable names must be ASCII letters, digits and underscores"
    if keyword.iskeyword(name):
        return f"the callable {name!r} is a Python keyword"
    for part in module.split("."):
        if not part:
            return "the module path has an empty part"
        if not re.fullmatch(_IDENTIFIER, part):
            return f"{part!r} in the module path is not a Python name"
    if not re.fullmatch(_IDENTIFIER, name):
        return f"the callable {name!r} is not a Python name"
    return "it is not of that form"


@dataclass(frozen=True)
class StaticMapping:
    """A URL prefix the node serves from a directory of the owner's (``webapps.node.static``)."""

    url: str  # a path prefix: "/static/" (``static.check_url_prefix``)
    path: str  # an absolute directory inside the owner's home, symlinks resolved
    cache_control: str = ""  # "" for ``static.DEFAULT_CACHE_CONTROL``


@dataclass(frozen=True)
class AppSpec:
    name: str  # the canonical domain: the app's identity on the node and its log file names
    source_directory: str
    wsgi_entry: str = DEFAULT_WSGI_ENTRY
    owner: str = ""  # username; the source must lie in HOME_ROOT/<owner lower-cased>/
    virtualenv_path: str = ""
    # "3.12": run under the node's Python 3.12 (``pythons``), and a virtualenv must be made with
    # it; "": the virtualenv's own Python, or the node's.
    python_version: str = ""
    # The panel itself runs as a system app: the node's Python and environment, no home check.
    system: bool = False
    extra_env: tuple[tuple[str, str], ...] = field(default=())
    workers: int = DEFAULT_WORKERS
    threads: int = DEFAULT_THREADS  # more than 1: gunicorn's gthread workers (keep-alive)
    # gunicorn's worker timeout and the node's wait for the app's first response byte, in
    # seconds; 0: the node's request timeout.
    timeout: int = 0
    # The owner's numeric identity, allocated by the panel (the same on every node): an isolated
    # node runs the app's processes as this uid and gid. 0: not known.
    uid: int = 0
    gid: int = 0
    # Served by the node itself, read with every lookup: changes need no reload, and they are
    # no change of the process's settings (not compared, so they never restart it).
    static: tuple[StaticMapping, ...] = field(default=(), compare=False)
    # Neither are these: checked by the node in front of the app. A disabled app is known but
    # not served (its visitors get the node's "disabled" page); password protection
    # (webapps.node.basic_auth) is the user name and the PBKDF2 verifier of its password, and
    # no verifier is no protection.
    enabled: bool = field(default=True, compare=False)
    auth_username: str = field(default="", compare=False)
    auth_verifier: str = field(default="", compare=False)


def app_dir(run_dir: Path, name: str) -> Path:
    """The app's own directory under the run directory: it holds its socket and nothing else.

    Owned by the app's uid, mode 0700, when the node isolates apps: only the app and root reach
    the socket in it.
    """
    digest = hashlib.blake2b(name.encode(), digest_size=8).hexdigest()
    return run_dir / "apps" / digest


def socket_path(run_dir: Path, name: str) -> Path:
    """The unix socket an app's gunicorn binds: short and fixed-length whatever the domain."""
    path = app_dir(run_dir, name) / "app.sock"
    if len(str(path).encode()) > MAX_SOCKET_PATH:
        raise ValueError(
            f"run directory {run_dir} is too long for unix sockets "
            f"({len(str(path).encode())} > {MAX_SOCKET_PATH} bytes); choose a shorter --run-dir"
        )
    return path


def log_stem(name: str) -> str:
    """The file name stem of an app's logs: its domain, shortened with a hash when very long."""
    if len(name) <= _MAX_LOG_STEM:
        return name
    digest = hashlib.blake2b(name.encode(), digest_size=8).hexdigest()
    return f"{name[: _MAX_LOG_STEM - 17]}-{digest}"


def check_source(spec: AppSpec, home_root: Path) -> Path:
    """The app's working directory with symlinks resolved now, refusing one outside its home.

    Checked at every start: a symlink planted after the app was registered must not let it run
    from somewhere else.
    """
    try:
        check_wsgi_entry(spec.wsgi_entry)
    except InvalidWsgiEntry as exc:
        raise SourceRefused(f"refused to start: {exc}") from None
    source = Path(spec.source_directory)
    if not source.is_absolute():
        raise SourceRefused(f"source directory {spec.source_directory!r} is not an absolute path")
    try:
        resolved = source.resolve(strict=True)
    except (OSError, RuntimeError) as exc:
        raise SourceRefused(f"source directory {source} cannot be resolved: {exc}") from None
    if not resolved.is_dir():
        raise SourceRefused(f"source directory {source} is not a directory")
    if spec.system:
        return resolved
    home = _home(spec, home_root)
    if not resolved.is_relative_to(home):
        raise SourceRefused(
            f"refused to start: source directory {source} resolves to {resolved}, "
            f"outside the owner's home {home}"
        )
    if spec.virtualenv_path:
        venv = Path(spec.virtualenv_path)
        try:
            venv_resolved = venv.resolve(strict=True)
        except (OSError, RuntimeError) as exc:
            raise SourceRefused(f"virtualenv {venv} cannot be resolved: {exc}") from None
        if not venv_resolved.is_relative_to(home):
            raise SourceRefused(
                f"refused to start: virtualenv {venv} resolves to {venv_resolved}, "
                f"outside the owner's home {home}"
            )
        check_virtualenv(venv_resolved, spec.python_version, shown=venv)
    return resolved


def check_virtualenv(venv: Path, asked: str, *, shown: Path | None = None) -> None:
    """``SourceRefused`` naming the problem when the virtualenv cannot run the app: made with
    another Python than ``asked`` (pyvenv.cfg), or with a Python this machine does not have."""
    shown = shown or venv
    cfg = pythons.pyvenv(venv)
    made_with = pythons.venv_version(venv, cfg)
    if asked and made_with and made_with != asked:
        raise SourceRefused(
            f"refused to start: virtualenv {shown} was made with Python {made_with}, but the "
            f"app asks for Python {asked}; make it anew with python{asked} -m venv {shown}, "
            f"or set the app's Python version to {made_with}"
        )
    python = venv / "bin" / "python"
    if not python.exists():  # a dangling link: its base interpreter is not on this machine
        base = cfg.get("home", "")
        if python.is_symlink() or base:
            with_what = f"Python {made_with or '?'} from {base or python.readlink()}"
            raise SourceRefused(
                f"refused to start: virtualenv {shown} was made with {with_what}, which this "
                f"node does not have; make it anew with one of the node's Pythons"
            )
        raise SourceRefused(f"virtualenv {shown} has no bin/python")


def owner_home(spec: AppSpec, home_root: Path) -> Path:
    """The owner's home, ``HOME_ROOT/<owner lower-cased>``, resolved."""
    return _home(spec, home_root)


def _home(spec: AppSpec, home_root: Path) -> Path:
    if not spec.owner:
        raise SourceRefused("the app has no owner, so it has no home to run from")
    return (home_root / spec.owner.lower()).resolve()


def python_for(spec: AppSpec, available: Mapping[str, str] | None = None) -> str:
    """The interpreter of the app's process: its virtualenv's, else the node's Python of its
    ``python_version`` (``available``: version -> interpreter), else the node's own.

    ``SourceRefused`` for a version the node does not have.
    """
    if spec.system:
        return sys.executable
    if spec.virtualenv_path:
        return str(Path(spec.virtualenv_path) / "bin" / "python")
    if spec.python_version:
        if available is None:
            available = {pythons.own_version(): sys.executable}
        if spec.python_version not in available:
            raise SourceRefused(
                f"refused to start: Python {spec.python_version} is not on this node; it has "
                f"{', '.join(available) or 'none'}"
            )
        return available[spec.python_version]
    return sys.executable


def gunicorn_argv(
    spec: AppSpec,
    *,
    socket: Path,
    access_fd: int,
    timeout: int,
    graceful_timeout: int,
    python: str = "",
    server_path: str = "",
) -> list[str]:
    """gunicorn's command line under ``python`` (default ``python_for(spec)``). With
    ``server_path`` (``pythons.server_packages``), a user app's interpreter adds it to the end of
    ``sys.path`` before it starts gunicorn (``SERVER_BOOT``), so a virtualenv without gunicorn
    runs on the node's."""
    python = python or python_for(spec)
    start = (
        ["-c", SERVER_BOOT, server_path] if server_path and not spec.system else ["-m", "gunicorn"]
    )
    argv = [
        python, *start,
        "--config", str(GUNICORN_CONF),
        "--bind", f"unix:{socket}",
        "--workers", str(spec.workers),
        "--timeout", str(timeout),
        "--graceful-timeout", str(graceful_timeout),
        # Access lines go to a pipe the node reads into a size-bounded log.
        "--access-logfile", f"/dev/fd/{access_fd}",
        "--error-logfile", "-",
        "--name", spec.name,
    ]  # fmt: skip
    if spec.threads > 1:
        argv += ["--worker-class", "gthread", "--threads", str(spec.threads)]
    argv.append(spec.wsgi_entry)
    return argv


def app_env(
    spec: AppSpec,
    *,
    home_root: Path,
    base_env: dict[str, str],
    ready_fd: int,
    generation_fd: int | None = None,
) -> dict:
    """The environment of an app's process.

    A user app gets only what a program needs to run, never the node's own variables. The
    panel (a system app) gets the node's environment plus its ``extra_env``.
    """
    if spec.system:
        env = dict(base_env)
        env.update(spec.extra_env)
    else:
        path = "/usr/local/bin:/usr/bin:/bin"
        env = {
            "PATH": path,
            "HOME": str(_home(spec, home_root)),
            "USER": spec.owner,
            "LANG": "C.UTF-8",
            # Prints reach the log as they happen, not when a buffer fills.
            "PYTHONUNBUFFERED": "1",
            "WEBAPP_DOMAIN": spec.name,
        }
        if spec.virtualenv_path:
            env["VIRTUAL_ENV"] = spec.virtualenv_path
            env["PATH"] = f"{spec.virtualenv_path}/bin:{path}"
        env.update(spec.extra_env)
    env[READY_FD_ENV] = str(ready_fd)
    if generation_fd is not None:
        env[GENERATION_FD_ENV] = str(generation_fd)
    return env
