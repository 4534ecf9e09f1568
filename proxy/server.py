"""``python -m proxy``: the front proxy process (options, workers, signals).

One worker is one process with one event loop (uvloop when installed): the forwarding engine
on the plain and TLS ports, the admin port, and a route subscriber that keeps the table in
memory. ``--workers N`` starts N such processes sharing the ports with SO_REUSEPORT; each keeps
its own table and connection pools. SIGTERM: stop accepting, let in-flight requests finish up
to ``--grace`` seconds, exit.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import ipaddress
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass

from proxy.core import Limits
from proxy.engine import Engine, EngineConfig
from routing.addresses import InvalidAddress, parse_address
from routing.publish import DEFAULT_PREFIX

log = logging.getLogger("proxy")


@dataclass(frozen=True)
class Option:
    flag: str
    env: str
    default: object
    kind: type
    help: str
    fallback_env: str | None = None  # a project-wide variable used when env is unset


OPTIONS = (
    Option("--listen", "PROXY_LISTEN", "127.0.0.1:8080", str, "plain HTTP listener, host:port"),
    Option("--admin-listen", "PROXY_ADMIN_LISTEN", "127.0.0.1:8081", str,
           "admin listener (/healthz, /metrics, /route), host:port"),
    Option("--admin-token", "PROXY_ADMIN_TOKEN", "", str,
           "bearer token the admin port requires (Authorization: Bearer <token>); needed when "
           "--admin-listen is not a loopback address; prefer the environment variable"),
    Option("--tls-listen", "PROXY_TLS_LISTEN", "", str,
           "HTTPS listener, host:port (needs --tls-cert and --tls-key); empty: none"),
    Option("--tls-cert", "PROXY_TLS_CERT", "", str, "certificate chain, PEM"),
    Option("--tls-key", "PROXY_TLS_KEY", "", str, "private key, PEM"),
    Option("--var-dir", "PROXY_VAR_DIR", "var", str,
           "the machine's state directory: its keys/ hold the public signing key and the "
           "certificate-keys pair when not given otherwise", "VAR_DIR"),
    Option("--trusted-keys", "ROUTES_TRUSTED_KEYS", "", str,
           "public key(s) that sign route tables, certificate and challenge documents: one, "
           "or two while rotating (ed25519:... or files, comma-separated); empty: "
           "VAR_DIR/keys/route-table.pub"),
    Option("--tls-keys-file", "PROXY_TLS_KEYS_FILE", "", str,
           "X25519 private key (PEM) opening the certificates' sealed keys; empty: "
           "VAR_DIR/keys/certificate-keys.key, made on first use"),
    Option("--tls-state-file", "PROXY_TLS_STATE_FILE", "var/proxy-tls.json", str,
           "last good certificate bundle on disk (keys sealed); empty: none"),
    Option("--redis", "PROXY_REDIS_URL", "redis://127.0.0.1:6379/0", str,
           "Redis holding the route table", "REDIS_URL"),
    Option("--redis-prefix", "PROXY_REDIS_PREFIX", DEFAULT_PREFIX, str, "Redis key prefix",
           "REDIS_PREFIX"),
    Option("--panel-host", "PROXY_PANEL_HOST", "panel.localhost", str,
           "the panel's host name (its reload URLs route by the app's domain)", "PANEL_HOST"),
    Option("--state-file", "PROXY_STATE_FILE", "var/proxy-routes.json", str,
           "last good route table on disk, used when starting while Redis is down; empty: none"),
    Option("--poll-interval", "PROXY_POLL_INTERVAL", 1.0, float,
           "seconds between route table re-reads (besides change messages)"),
    Option("--workers", "PROXY_WORKERS", 1, int, "worker processes sharing the ports"),
    Option("--grace", "PROXY_GRACE", 10.0, float, "seconds in-flight requests get on SIGTERM"),
    Option("--header-timeout", "PROXY_HEADER_TIMEOUT", 10.0, float,
           "seconds for a request head to arrive (408)"),
    Option("--idle-timeout", "PROXY_IDLE_TIMEOUT", 60.0, float,
           "seconds an idle keep-alive client connection is kept"),
    Option("--connect-timeout", "PROXY_CONNECT_TIMEOUT", 5.0, float,
           "seconds to connect to a backend (then the next one, else 504)"),
    Option("--first-byte-timeout", "PROXY_FIRST_BYTE_TIMEOUT", 60.0, float,
           "seconds from request sent to first response byte (504)"),
    Option("--pool-idle-timeout", "PROXY_POOL_IDLE_TIMEOUT", 30.0, float,
           "seconds an idle backend connection is kept"),
    Option("--max-body", "PROXY_MAX_BODY", 100 * 1024 * 1024, int,
           "largest request body in bytes (413)"),
    Option("--max-request-line", "PROXY_MAX_REQUEST_LINE", 8 * 1024, int,
           "longest request target in bytes (414)"),
    Option("--max-header-bytes", "PROXY_MAX_HEADER_BYTES", 32 * 1024, int,
           "largest header block in bytes (431)"),
    Option("--max-header-count", "PROXY_MAX_HEADER_COUNT", 100, int,
           "most header fields (431)"),
    Option("--trusted-proxies", "PROXY_TRUSTED_PROXIES", "", str,
           "comma-separated CIDRs whose X-Forwarded-* are kept"),
    Option("--fail-threshold", "PROXY_FAIL_THRESHOLD", 3, int,
           "consecutive connect failures that mark a backend down"),
    Option("--down-seconds", "PROXY_DOWN_SECONDS", 10.0, float,
           "seconds a backend stays marked down"),
    Option("--via", "PROXY_VIA", "hosting-proxy", str, "name in the Via header"),
    Option("--name", "PROXY_NAME", "", str,
           "this proxy's name in the fleet (heartbeats); empty: the host name"),
    Option("--log-level", "PROXY_LOG_LEVEL", "INFO", str, "DEBUG, INFO, WARNING or ERROR"),
)  # fmt: skip


def build_parser(environ: dict[str, str] | None = None) -> argparse.ArgumentParser:
    env = os.environ if environ is None else environ
    parser = argparse.ArgumentParser(
        prog="python -m proxy",
        description="The front proxy: routes each request by its canonical key over the route "
        "table held in memory (read from Redis, kept in the state file).",
        epilog="Every option can also be set from the environment variable named after it; "
        "a command-line flag wins over the environment.",
    )
    for opt in OPTIONS:
        default = opt.default
        if opt.env in env:
            default = opt.kind(env[opt.env])
        elif opt.fallback_env and opt.fallback_env in env:
            default = opt.kind(env[opt.fallback_env])
        envs = opt.env + (f", else {opt.fallback_env}" if opt.fallback_env else "")
        parser.add_argument(
            opt.flag,
            type=opt.kind,
            default=default,
            help=f"{opt.help} (env {envs}; default {opt.default!r})",
        )
    return parser


def parse_listen(value: str) -> tuple[str, int]:
    """A listener's ``host:port`` or ``[v6]:port`` (``routing.addresses.parse_address``) as
    the host and port ``bind`` takes."""
    try:
        address = parse_address(value)
    except InvalidAddress as exc:
        raise SystemExit(f"error: {exc}") from None
    return address.bind_host, address.port


def check_admin(args: argparse.Namespace) -> None:
    """The admin port tells the route table and the fleet's health: loopback, or a token."""
    host, _ = parse_listen(args.admin_listen)
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback and not args.admin_token:
        raise SystemExit(
            f"error: the admin port would listen on {args.admin_listen}, beyond loopback, "
            "without a token: set PROXY_ADMIN_TOKEN (or --admin-token), or listen on 127.0.0.1"
        )
    if args.admin_token and len(args.admin_token) < 16:
        raise SystemExit("error: the admin token must be at least 16 characters long")


def engine_config(args: argparse.Namespace) -> EngineConfig:
    trusted = tuple(c.strip() for c in args.trusted_proxies.split(",") if c.strip())
    return EngineConfig(
        limits=Limits(
            max_request_line=args.max_request_line,
            max_header_bytes=args.max_header_bytes,
            max_header_count=args.max_header_count,
            max_body=args.max_body,
        ),
        header_timeout=args.header_timeout,
        idle_timeout=args.idle_timeout,
        connect_timeout=args.connect_timeout,
        first_byte_timeout=args.first_byte_timeout,
        pool_idle_timeout=args.pool_idle_timeout,
        trusted_proxies=trusted,
        via=args.via,
        fail_threshold=args.fail_threshold,
        down_seconds=args.down_seconds,
    )


def certificate_watcher(args: argparse.Namespace, ssl_ctx, tls, on_installed=None):
    """The watcher of the signed certificate bundle and challenge answers, and the SNI store
    (None without a TLS listener: then only challenges are answered); ``on_installed()`` is
    called after each bundle is installed."""
    from proxy.tls import CertificateStore
    from routing.certs import DocumentWatcher
    from routing.keys import trusted_keys_from
    from routing.sealed import load_or_create_private_key, load_private_key

    try:
        trusted = trusted_keys_from(args.var_dir, args.trusted_keys)
        private = (
            load_private_key(args.tls_keys_file)
            if args.tls_keys_file
            else load_or_create_private_key(args.var_dir)
        )
    except (ValueError, OSError) as exc:
        raise SystemExit(f"error: {exc}") from None
    store = CertificateStore(ssl_ctx, private, tls) if ssl_ctx is not None else None

    async def on_certs(bundle) -> None:
        if store is None:
            return  # no HTTPS listener: nothing to present, nowhere to redirect to
        built, failed = await asyncio.to_thread(store.build, bundle)
        store.apply(bundle, built, failed)
        if on_installed is not None:
            on_installed()

    watcher = DocumentWatcher(
        args.redis,
        args.redis_prefix,
        trusted_keys=trusted,
        on_certs=on_certs,
        on_challenges=tls.take_challenges,
        state_file=args.tls_state_file or None,
        poll_interval=args.poll_interval,
    )
    return watcher, store


async def run_worker(args: argparse.Namespace, worker: str, reuse_port: bool) -> int:
    from proxy.front import AdminResolver, FrontResolver, fleet_report
    from proxy.tls import TlsState
    from routing.fleet import Heartbeat, RateMeter
    from routing.keys import trusted_keys_from
    from routing.subscriber import RouteSubscriber

    ssl_ctx = None
    if args.tls_listen:
        if not (args.tls_cert and args.tls_key):
            raise SystemExit(
                "error: --tls-listen needs --tls-cert and --tls-key "
                "(python -m proxy.tls makes a local CA and certificate)"
            )
        from proxy.tls import server_context

        ssl_ctx = server_context(args.tls_cert, args.tls_key)

    try:
        trusted = trusted_keys_from(args.var_dir, args.trusted_keys)
    except (ValueError, OSError) as exc:
        raise SystemExit(f"error: route-table keys: {exc}") from None
    subscriber = RouteSubscriber(
        args.redis,
        prefix=args.redis_prefix,
        state_file=args.state_file or None,
        poll_interval=args.poll_interval,
        trusted_keys=trusted,
        on_change=lambda table: heartbeat.table_taken(table),
    )
    tls = TlsState(https_port=parse_listen(args.tls_listen)[1] if ssl_ctx is not None else None)
    # The heartbeat reports the certificates held: written again as soon as they change.
    watcher, store = certificate_watcher(args, ssl_ctx, tls, lambda: heartbeat.wake())
    # getattr through partial: no Python frame per request.
    front = FrontResolver(functools.partial(getattr, subscriber, "table"), args.panel_host, tls=tls)
    engine = Engine(front, engine_config(args))
    front.engine = engine
    admin = Engine(
        AdminResolver(
            front,
            engine,
            subscriber,
            worker,
            certificates=store,
            watcher=watcher,
            token=args.admin_token,
        ),
        EngineConfig(header_timeout=5.0, idle_timeout=10.0, via=args.via),
    )
    heartbeat = Heartbeat(
        args.redis,
        role="proxy",
        name=f"{args.name or socket.gethostname()}/{worker}",
        report=functools.partial(
            fleet_report, engine, subscriber, args.listen, RateMeter(), certificates=store
        ),
        prefix=args.redis_prefix,
    )
    await subscriber.start()
    await watcher.start()
    await heartbeat.start()
    host, port = parse_listen(args.listen)
    await engine.listen(host, port, reuse_port=reuse_port)
    urls = [f"http://{args.listen}"]
    if ssl_ctx is not None:
        thost, tport = parse_listen(args.tls_listen)
        await engine.listen(thost, tport, ssl=ssl_ctx, reuse_port=reuse_port)
        urls.append(f"https://{args.tls_listen}")
    ahost, aport = parse_listen(args.admin_listen)
    await admin.listen(ahost, aport, reuse_port=reuse_port)
    table = subscriber.table
    log.info(
        "worker %s serving %s, admin http://%s, route table %s",
        worker,
        " ".join(urls),
        args.admin_listen,
        f"version {table.version}" if table else "not held yet (503 until one arrives)",
    )

    # Everything made so far (modules, tables, listeners) lives as long as the worker: kept out
    # of the cyclic collector's scans, which otherwise pause the loop now and then (the tail of
    # the latency in bench/proxy_bench.py).
    gc.collect()
    gc.freeze()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("worker %s stopping: finishing in-flight requests (grace %.1fs)", worker, args.grace)
    await engine.shutdown(args.grace)
    await admin.shutdown(1.0)
    await watcher.stop()
    await heartbeat.stop()
    await subscriber.stop()
    return 0


def _run_loop(coro) -> int:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def supervise(argv: list[str], args: argparse.Namespace) -> int:
    """Start ``args.workers`` worker processes; pass SIGTERM/SIGINT on; restart a worker that
    dies (at most once a second each)."""
    children: dict[int, subprocess.Popen] = {}
    started: dict[int, float] = {}
    stopping = False

    def spawn(i: int) -> None:
        env = dict(os.environ, PROXY_WORKER_ID=str(i))
        cmd = [sys.executable, "-m", "proxy", *argv, "--workers", "1"]
        children[i] = subprocess.Popen(cmd, env=env)
        started[i] = time.monotonic()

    def on_signal(signum, frame) -> None:
        nonlocal stopping
        stopping = True
        for child in children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    for i in range(args.workers):
        spawn(i)
    deadline = None
    while True:
        alive = [c for c in children.values() if c.poll() is None]
        if stopping:
            if not alive:
                return 0
            deadline = deadline or time.monotonic() + args.grace + 5
            if time.monotonic() > deadline:
                for child in alive:
                    child.kill()
        else:
            for i, child in list(children.items()):
                if child.poll() is not None and time.monotonic() - started[i] > 1.0:
                    log.error("worker %d exited with %s; restarting it", i, child.returncode)
                    spawn(i)
        time.sleep(0.2)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s proxy[%(process)d] %(name)s: %(message)s",
    )
    if args.workers < 1:
        raise SystemExit("error: --workers must be at least 1")
    check_admin(args)
    worker_id = os.environ.get("PROXY_WORKER_ID")
    if args.workers > 1 and worker_id is None:
        return supervise(argv, args)
    return _run_loop(run_worker(args, worker_id or "0", reuse_port=worker_id is not None))
