"""``manage.py runnode``: run one backend node (see docs/node.md).

The node (``webapps.node``) imports no Django. This command is its Django shell: it reads every
setting and hands the node plain data (``NodeConfig``) and the app lookup as a plain callable
(``webapp_spec``, which reads the ``WebApp`` table).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import stat
import sys
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from routing.addresses import (
    BACKEND_NAME_HELP,
    DEFAULT_TRUSTED_PROXIES,
    Address,
    InvalidAddress,
    is_backend_name,
    parse_address,
)
from webapps.node.sandbox import python_paths
from webapps.node.spec import DEFAULT_THREADS, DEFAULT_WORKERS, AppSpec, StaticMapping

DEFAULT_LISTEN = "127.0.0.1:9001"
log = logging.getLogger(__name__)


def _address(raw: str) -> Address:
    try:
        return parse_address(raw)
    except InvalidAddress as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _name(raw: str) -> str:
    if not is_backend_name(raw):
        raise argparse.ArgumentTypeError(f"{raw!r} is not a backend name: {BACKEND_NAME_HELP}")
    return raw


def _seconds(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a number of seconds") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{raw!r} is negative")
    return value


def _count(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{raw!r} is negative")
    return value


def _max_running(option: int | None) -> int | None:
    """The cap on running user apps: the option, else the setting; 0 means none."""
    value = settings.NODE_MAX_RUNNING_APPS if option is None else option
    return value or None


class Command(BaseCommand):
    help = (
        "Run a backend node: serve every app's requests on one port from per-app gunicorn "
        "processes (started on first request, stopped when idle), the panel included, and "
        "carry out reloads asked for by the local panel over a unix control socket."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--name",
            required=True,
            type=_name,
            help=f"this node's name in the route table: {BACKEND_NAME_HELP}",
        )
        parser.add_argument(
            "--listen",
            type=_address,
            default=DEFAULT_LISTEN,
            metavar="HOST:PORT",
            help=f"the address to serve HTTP on (default {DEFAULT_LISTEN})",
        )
        parser.add_argument(
            "--run-dir",
            help="apps' unix sockets and the control socket "
            "(default VAR_DIR/run/<name>; keep it short: socket paths are limited to 107 bytes)",
        )
        parser.add_argument(
            "--log-dir", help="per-app access/error/server logs (default VAR_DIR/log/<name>)"
        )
        parser.add_argument(
            "--idle-timeout",
            type=_seconds,
            default=900.0,
            metavar="SECONDS",
            help="stop an app unused for this long; 0 never stops one (default 900)",
        )
        parser.add_argument(
            "--max-running-apps",
            type=_count,
            default=None,
            metavar="N",
            help="run at most N user apps at once (the panel not counted): a request for "
            "another one first stops the least recently used idle app; 0 for no cap "
            "(default NODE_MAX_RUNNING_APPS, 50)",
        )
        parser.add_argument(
            "--start-timeout",
            type=_seconds,
            default=30.0,
            metavar="SECONDS",
            help="how long a starting app may take to answer before it has failed (default 30)",
        )
        parser.add_argument(
            "--reload-timeout",
            type=_seconds,
            default=30.0,
            metavar="SECONDS",
            help="how long a reload waits for the new workers to answer (default 30)",
        )
        parser.add_argument(
            "--stop-timeout",
            type=_seconds,
            default=15.0,
            metavar="SECONDS",
            help="grace for in-flight requests when an app or the node stops (default 15)",
        )
        parser.add_argument(
            "--request-timeout",
            type=int,
            default=settings.NODE_REQUEST_TIMEOUT,
            metavar="SECONDS",
            help="an app's request may take this long before it gets 504 and its worker is "
            "restarted, unless its owner chose another timeout (default NODE_REQUEST_TIMEOUT, "
            f"{settings.NODE_REQUEST_TIMEOUT})",
        )
        parser.add_argument(
            "--cache-seconds",
            type=_seconds,
            default=2.0,
            metavar="SECONDS",
            help="how long a domain -> app lookup is cached (default 2); for as long again "
            "it is still answered while one lookup refreshes it",
        )
        parser.add_argument(
            "--trusted-proxy",
            action="append",
            metavar="CIDR",
            help="peers whose X-Forwarded-* headers are kept; repeatable (default loopback)",
        )
        parser.add_argument(
            "--redis",
            default=None,
            metavar="URL",
            help="where the route table is published (default NODE_REDIS_URL, else REDIS_URL: "
            "give a password in the environment, never on the command line); the node stops "
            "apps the table moves to another node. Tables must be signed with a key of "
            "ROUTES_TRUSTED_KEYS (default: the machine's under VAR_DIR/keys/)",
        )
        parser.add_argument(
            "--no-routes",
            action="store_true",
            help="do not follow the route table (apps stay until idle)",
        )
        parser.add_argument(
            "--apps-share-node-user",
            action="store_true",
            help="let every app run as the node's own user when the node cannot isolate them "
            "(not root, no bubblewrap); without it such a node refuses to start "
            "(also NODE_APPS_SHARE_NODE_USER=1)",
        )
        parser.add_argument(
            "--no-egress",
            action="store_true",
            help="sandboxed apps get no outbound network at all (also NODE_APP_EGRESS=0)",
        )
        parser.add_argument(
            "--hide-name",
            action="store_true",
            help="do not add X-Backend: <name> to responses (also off when NODE_EXPOSE_NAME=0)",
        )

    def handle(self, *args, **options) -> None:
        from webapps.node import launching, sandbox
        from webapps.node import pythons as node_pythons
        from webapps.node.cgroups import Limits, MiB
        from webapps.node.server import NodeConfig, NodeServer

        name = options["name"]
        try:  # checked before anything of the host is touched
            pythons = node_pythons.pythons_for(settings.NODE_PYTHONS)
        except ValueError as exc:
            raise CommandError(f"NODE_PYTHONS: {exc}") from None
        try:
            isolated, in_force = launching.prepare(
                name,
                apps_share_node_user=(
                    options["apps_share_node_user"] or settings.NODE_APPS_SHARE_NODE_USER
                ),
                panel_uid=settings.PANEL_UID,
                panel_gid=settings.PANEL_GID,
                limits=Limits(
                    memory=settings.NODE_OWNER_MEMORY_MB * MiB,
                    pids=settings.NODE_OWNER_PIDS,
                    cpu_weight=settings.NODE_OWNER_CPU_WEIGHT,
                ),
                egress=settings.NODE_APP_EGRESS and not options["no_egress"],
                egress_pool=settings.NODE_EGRESS_POOL,
            )
        except (sandbox.IsolationUnavailable, ValueError, OSError) as exc:
            raise CommandError(str(exc)) from None
        in_force = (*in_force, f"pythons: {node_pythons.describe(pythons)}")
        missing = [v for v in settings.PYTHON_VERSIONS if v not in pythons]
        if missing:
            in_force = (
                *in_force,
                f"warning: PYTHON_VERSIONS offers {', '.join(missing)}, which this node does "
                "not have (NODE_PYTHONS); apps asking for it will not start here",
            )
        try:
            platform = node_pythons.platform_packages(
                settings.PLATFORM_PACKAGES_DIR, settings.PLATFORM_PACKAGES
            )
        except OSError as exc:
            raise CommandError(f"PLATFORM_PACKAGES_DIR: {exc}") from None
        in_force = (*in_force, f"platform packages: {platform or 'none'}")
        log_dir = _path(options["log_dir"]) or settings.VAR_DIR / "log" / name
        if isolated is not None:
            grant_panel_access(isolated.panel_uid, isolated.panel_gid, log_dir)
        for line in in_force:
            self.stdout.write(f"node {name}: {line}")
        self.stdout.flush()
        listen: Address = options["listen"]
        var = settings.VAR_DIR
        config = NodeConfig(
            name=name,
            host=listen.bind_host,
            port=listen.port,
            run_dir=_path(options["run_dir"]) or var / "run" / name,
            log_dir=log_dir,
            home_root=settings.HOME_ROOT,
            panel_host=settings.PANEL_HOST,
            base_dir=settings.BASE_DIR,
            idle_timeout=options["idle_timeout"] or None,
            start_timeout=options["start_timeout"],
            reload_timeout=options["reload_timeout"],
            stop_timeout=options["stop_timeout"],
            request_timeout=options["request_timeout"],
            cache_seconds=options["cache_seconds"],
            expose_name=settings.NODE_EXPOSE_NAME and not options["hide_name"],
            trusted_proxies=tuple(options["trusted_proxy"] or DEFAULT_TRUSTED_PROXIES),
            redis_url="" if options["no_routes"] else (options["redis"] or settings.NODE_REDIS_URL),
            redis_prefix=settings.REDIS_PREFIX,
            isolated=isolated,
            in_force=in_force,
            egress_deny=tuple(settings.NODE_EGRESS_DENY),
            max_workers=settings.NODE_MAX_WORKERS_PER_APP,
            max_threads=settings.NODE_MAX_THREADS_PER_APP,
            max_timeout=settings.NODE_MAX_TIMEOUT_PER_APP,
            max_running=_max_running(options["max_running_apps"]),
            trusted_keys=() if options["no_routes"] else _trusted_keys(),
            pythons=pythons,
            platform_packages=settings.PLATFORM_PACKAGES_DIR if platform else None,
        )
        try:
            server = NodeServer(config, lookup=webapp_spec)
        except ValueError as exc:  # e.g. a run directory too long for unix sockets
            raise CommandError(str(exc)) from None
        try:
            import uvloop  # the engine is tuned for it, as in the front proxy
        except ImportError:
            asyncio.run(server.run_until_signalled())
        else:
            uvloop.run(server.run_until_signalled())


def webapp_spec(domain: str) -> AppSpec | None:
    """The app with this canonical domain, read from the database (blocking); a disabled one
    too, so that the node can tell its visitors so.

    The node's app lookup: it calls this in its one lookup thread, never on its event loop.
    """
    from django.db import close_old_connections, connection

    from webapps.models import WebApp

    # This runs outside any request: drop a connection the database may have closed meanwhile
    # (not inside a transaction, where Django would take that connection for a broken one).
    if not connection.in_atomic_block:
        close_old_connections()
    app = (
        WebApp.objects.select_related("owner")
        .prefetch_related("static_files")
        .filter(domain=domain)
        .first()
    )
    if app is None:
        return None
    protected = app.password_protection_enabled and bool(app.password_protection_hash)
    static = tuple(StaticMapping(m.url, m.path, m.cache_control) for m in app.static_files.all())
    return AppSpec(
        name=app.domain,
        source_directory=str(app.source_directory),
        wsgi_entry=app.wsgi_entry,
        owner=app.owner.username,
        virtualenv_path=str(getattr(app, "virtualenv_path", "") or ""),
        python_version=app.python_version,
        # Left empty by the owner: the platform's defaults (the node's bounds hold either way).
        workers=app.workers or DEFAULT_WORKERS,
        threads=app.threads or DEFAULT_THREADS,
        timeout=app.worker_timeout or 0,
        uid=app.owner.uid or 0,
        gid=app.owner.gid or 0,
        enabled=app.enabled,
        auth_username=app.password_protection_username if protected else "",
        auth_verifier=app.password_protection_hash if protected else "",
        static=static,
    )


def _trusted_keys() -> tuple:
    from routing.keys import trusted_keys_from

    try:
        return trusted_keys_from(settings.VAR_DIR, settings.ROUTES_TRUSTED_KEYS)
    except (ValueError, OSError) as exc:
        raise CommandError(f"route-table keys: {exc}") from None


def grant_panel_access(uid: int, gid: int, log_dir: Path) -> None:
    """Let the panel's own uid and gid reach what the panel needs, and nothing else.

    The panel runs on the node as ``PANEL_UID``/``PANEL_GID``: it reads the secret key and reads
    and writes the SQLite database (and the journal files beside it), reaches the control
    socket, reads the project's code, signs and seals with the machine's keys (not the proxies'
    private sealing key), and reads (and deletes, for the Web tab) the apps' logs,
    its own node's and the other nodes' under ``VAR_DIR/log``. Those get the panel's group (the
    log directories setgid, so every log file made in them is the panel group's); everything
    else under ``VAR_DIR`` (TLS keys, demo credentials, homes) stays the node's. Directories on the
    way to them get the search bit for others (names known can be reached, nothing listed).
    """
    var = settings.VAR_DIR
    _give_group(var, gid, 0o770)
    secret = var / "secret_key"
    if secret.exists():
        _give_group(secret, gid, 0o640)
    database = settings.DATABASES["default"]
    if database["ENGINE"] == "django.db.backends.sqlite3":
        path = Path(str(database["NAME"]))
        if path.exists():
            _give_group(path.parent, gid, 0o770)
            for suffix in ("", "-wal", "-shm", "-journal"):
                sibling = path.with_name(path.name + suffix)
                if sibling.exists():
                    _give_group(sibling, gid, 0o660)
            _searchable(path.parent)
    _grant_keys(var, gid)
    log_dir.mkdir(parents=True, exist_ok=True)
    if log_dir.parent == var / "log":  # the nodes' shared log root: the panel lists it
        _give_group(log_dir.parent, gid, 0o2750)
    _searchable(log_dir.parent)
    _give_group(log_dir, gid, 0o2770)
    for path in log_dir.iterdir():
        if path.is_file() and not path.is_symlink():
            _give_group(path, gid, 0o640)
    _searchable(var)
    _searchable(settings.BASE_DIR)
    for directory in python_paths(sys.executable):  # the interpreter the panel runs with
        _searchable(Path(directory))
    settings.HOME_ROOT.mkdir(parents=True, exist_ok=True)
    settings.HOME_ROOT.chmod(0o711)  # homes are 0700 each; nobody lists them


def _grant_keys(var: Path, gid: int) -> None:
    """The machine's key pairs under ``VAR_DIR/keys`` (made now if missing, as on first use):
    the panel signs the documents it publishes (certificates, challenges) with the route-table
    key and seals certificate keys to the proxies' public key; the proxies' private sealing
    key stays root's."""
    from routing import keys, sealed

    if not settings.ROUTES_SIGNING_KEY_FILE:
        keys.load_or_create_signing_key(var)
    if not settings.TLS_KEYS_PUBLIC:
        sealed.load_or_create_private_key(var)
    directory = var / keys.KEY_DIR
    if not directory.is_dir():
        return
    _give_group(directory, gid, 0o750)
    for name, mode in ((keys.PRIVATE_NAME, 0o640), (keys.PUBLIC_NAME, 0o644),
                       (sealed.PUBLIC_NAME, 0o644)):  # fmt: skip
        path = directory / name
        if path.is_file() and not path.is_symlink():
            _give_group(path, gid, mode)


def _give_group(path: Path, gid: int, mode: int) -> None:
    os.chown(path, -1, gid, follow_symlinks=False)
    os.chmod(path, mode, follow_symlinks=False)


def _searchable(path: Path) -> None:
    """Add the search bit for others to every directory from / down to ``path``."""
    for directory in (path, *path.parents):
        mode = directory.stat().st_mode
        if not mode & stat.S_IXOTH:
            log.info("making %s searchable for the panel's uid", directory)
            directory.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)


def _path(raw: str | None) -> Path | None:
    return Path(raw).resolve() if raw else None
