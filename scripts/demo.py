"""`make demo`: the whole platform on this machine, with embedded defaults.

Starts a private Redis with access control (unless REDIS_URL is given: one user per role and
per fleet member, passwords drawn once into var/redis/users.json, see scripts/redis_users.py;
with DEMO_REDIS=sentinel a master, a replica and three sentinels instead, every instance with the
same users and every process reaching the group through a sentinel:// URL with its own user,
scripts/sentinels.py), migrates, seeds demo data idempotently,
makes a local CA and certificate, prints where to look, then hands the long-running processes
(Celery worker and beat, nodes b1..b4, the proxy) to honcho. Ctrl-C stops everything it started;
running it again reuses var/ (database, credentials, certificate).

Ports and hosts come from the environment; see the README's "The demo" section.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

from scripts import redis_users, sentinels
from scripts.pebble import Pebble, binaries
from scripts.platform import (
    REPO_ROOT,
    NodeSpec,
    PlatformConfig,
    process_table,
    write_launch_file,
)
from scripts.services import redis_server_binary


def _int_env(name: str, default: int) -> int:
    raw = os.environ.get(name, str(default))
    try:
        value = int(raw)
    except ValueError:
        raise SystemExit(f"demo: {name}={raw!r} is not a port number") from None
    if not 0 < value < 65536:
        raise SystemExit(f"demo: {name}={value} is not a port number (1-65535)")
    return value


def config_from_environment() -> PlatformConfig:
    var_dir = Path(os.environ.get("VAR_DIR", REPO_ROOT / "var")).resolve()
    redis_port = _int_env("DEMO_REDIS_PORT", 6390)
    first_node_port = _int_env("NODE_BASE_PORT", 9001)
    return PlatformConfig(
        var_dir=var_dir,
        redis_url=os.environ.get("REDIS_URL", f"redis://127.0.0.1:{redis_port}/0"),
        database_url=os.environ.get("DATABASE_URL", f"sqlite:///{var_dir / 'db.sqlite3'}"),
        panel_host=os.environ.get("PANEL_HOST", "panel.localhost"),
        apps_domain=os.environ.get("APPS_DOMAIN", "apps.localhost"),
        host=os.environ.get("DEMO_HOST", "127.0.0.1"),
        proxy_port=_int_env("PROXY_PORT", 8080),
        proxy_tls_port=_int_env("PROXY_TLS_PORT", 8443),
        proxy_admin_port=_int_env("PROXY_ADMIN_PORT", 8081),
        nodes=tuple(NodeSpec(f"b{i + 1}", first_node_port + i) for i in range(4)),
    )


def _port_in_use(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.3)
        return sock.connect_ex((host, port)) == 0


def check_acl_support(binary: str) -> None:
    """Redis 7 or newer: the users' read-only key rules (``%R~``) came with it."""
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10).stdout
    version = out.split("v=", 1)[1].split()[0] if "v=" in out else "0"
    if int(version.split(".")[0] or 0) < 7:
        raise SystemExit(
            f"demo: {binary} is Redis {version}; its access control needs Redis 7 or newer "
            "(apt-get install redis-server), or give REDIS_URL"
        )


def start_private_redis(config: PlatformConfig) -> subprocess.Popen[bytes]:
    port = int(config.redis_url.rsplit(":", 1)[1].split("/")[0])
    if _port_in_use("127.0.0.1", port):
        raise SystemExit(
            f"demo: port {port} is taken; is another demo running? "
            "Stop it, set DEMO_REDIS_PORT, or give REDIS_URL"
        )
    data_dir = config.var_dir / "redis"
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    binary = redis_server_binary()
    check_acl_support(binary)
    acl = redis_users.write_acl_file(
        config.var_dir, os.environ.get("REDIS_PREFIX", "hosting:"), config.members()
    )
    process = subprocess.Popen(
        [binary, "--bind", "127.0.0.1", "--port", str(port), "--dir",
         str(data_dir), "--save", "60 1", "--appendonly", "no", "--logfile", "redis.log",
         "--aclfile", str(acl)],
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while not _port_in_use("127.0.0.1", port):
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"demo: redis-server did not start; see {data_dir / 'redis.log'}")
        time.sleep(0.05)
    return process


def start_sentinel_group(config: PlatformConfig) -> tuple[list[subprocess.Popen[bytes]], str]:
    """``DEMO_REDIS=sentinel``: a master on DEMO_REDIS_PORT, its replica on the next port and
    three sentinels on DEMO_SENTINEL_PORT and the two after it (scripts/sentinels.py), with the
    same access control as the private Redis (the replica and the sentinels under users of their
    own); returns the processes and the group's sentinel:// URL (without a user)."""
    port = _int_env("DEMO_REDIS_PORT", 6390)
    first_sentinel = _int_env("DEMO_SENTINEL_PORT", 26390)
    redis = [sentinels.Instance("127.0.0.1", port + i) for i in range(2)]
    watchers = [sentinels.Instance("127.0.0.1", first_sentinel + i) for i in range(3)]
    for instance in (*redis, *watchers):
        if _port_in_use(instance.host, instance.port):
            raise SystemExit(
                f"demo: port {instance.port} is taken; is another demo running? "
                "Stop it, set DEMO_REDIS_PORT and DEMO_SENTINEL_PORT, or give REDIS_URL"
            )
    check_acl_support(redis_server_binary())
    access = sentinels.Access.write(
        config.var_dir, config.members(), os.environ.get("REDIS_PREFIX", "hosting:")
    )
    root = config.var_dir / "sentinel"
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for index, instance in enumerate(redis):
            data = root / f"redis{index}"
            data.mkdir(mode=0o700, parents=True, exist_ok=True)
            argv = sentinels.redis_argv(instance, data, access=access, save="60 1",
                                        replica_of=None if index == 0 else redis[0])  # fmt: skip
            processes.append(subprocess.Popen(argv, cwd=data))
        for index, watcher in enumerate(watchers):
            # A fresh configuration each start: the first instance is the master again.
            conf = sentinels.sentinel_conf(root / f"sentinel{index}" / "sentinel.conf", watcher,
                                           redis[0], access=access)  # fmt: skip
            processes.append(subprocess.Popen(sentinels.sentinel_argv(conf), cwd=conf.parent))
        deadline = time.monotonic() + 15
        for instance in (*redis, *watchers):
            while not _port_in_use(instance.host, instance.port):
                if time.monotonic() > deadline:
                    raise SystemExit(f"demo: the Sentinel group did not start; see {root}")
                time.sleep(0.05)
    except BaseException:
        _stop(processes)
        raise
    print(f"Redis:        master {redis[0]}, replica {redis[1]}, sentinels "
          f"{', '.join(str(w) for w in watchers)}")  # fmt: skip
    return processes, sentinels.sentinel_url(watchers)


def _stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()


def manage(config: PlatformConfig, *args: str) -> str:
    result = subprocess.run(
        [config.python, "manage.py", *args],
        cwd=REPO_ROOT,
        env=config.child_environment(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    if result.returncode != 0:
        sys.stderr.write(result.stdout + result.stderr)
        raise SystemExit(f"demo: manage.py {' '.join(args)} failed ({result.returncode})")
    return result.stdout


def write_procfile(config: PlatformConfig) -> Path:
    """honcho's Procfile: each line starts one process of the table through
    ``scripts.platform run`` with its own environment (its Redis user), so that no password
    appears in the Procfile or on a command line."""
    launch = write_launch_file(config, config.var_dir / "launch.json")
    path = config.var_dir / "Procfile"
    lines = [
        f"{name}: {shlex.join([config.python, '-m', 'scripts.platform', 'run', name, str(launch)])}"
        for name in process_table(config)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def run_honcho(config: PlatformConfig, procfile: Path) -> int:
    """Run honcho until it exits; SIGINT, SIGTERM or SIGHUP to the demo stops it (and so every
    process) the way Ctrl-C does, so that `kill` or a closed terminal leaves nothing running."""
    honcho = subprocess.Popen(
        [config.python, "-m", "honcho", "start", "-f", str(procfile), "-d", str(REPO_ROOT)],
        cwd=REPO_ROOT,
        env=config.child_environment(),
    )

    def forward(signum: int, frame: object) -> None:
        honcho.send_signal(signal.SIGTERM)

    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, forward)
    while True:
        try:
            return honcho.wait()
        except KeyboardInterrupt:
            # Ctrl-C in a terminal reaches honcho too, but a SIGINT sent to the demo alone must
            # stop everything as well: ask honcho (it terminates its processes once, however
            # often it is asked) and wait for it.
            honcho.send_signal(signal.SIGTERM)
            continue


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="make demo", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--setup-only", action="store_true", help="migrate, seed and print, start no processes"
    )
    args = parser.parse_args(argv)

    config = config_from_environment()
    from webapps.node.sandbox import detect_isolation

    isolation = detect_isolation()
    config = replace(config, apps_share_node_user=not isolation.available)
    config.var_dir.mkdir(parents=True, exist_ok=True)
    mode = os.environ.get("DEMO_REDIS", "single")
    if mode not in ("single", "sentinel"):
        raise SystemExit(f"demo: DEMO_REDIS={mode!r} must be 'single' or 'sentinel'")
    redis = None
    group: list[subprocess.Popen[bytes]] = []
    if "REDIS_URL" not in os.environ:
        if mode == "sentinel":
            group, url = start_sentinel_group(config)
            config = dataclasses.replace(config, redis_url=url)
        else:
            redis = start_private_redis(config)
        # Each process its own user, on the one Redis or through the sentinels alike.
        passwords = redis_users.ensure_passwords(config.var_dir, config.members())
        config = dataclasses.replace(
            config, redis_urls=redis_users.urls(config.redis_url, passwords)
        )
    pebble = None
    if "ACME_DIRECTORY_URL" not in os.environ and binaries() is not None:
        # A local ACME server whose HTTP-01 checks reach the proxy's plain port, and whose DNS
        # resolves every name to the proxy: demo apps get certificates by themselves.
        pebble = Pebble(config.var_dir / "pebble", http_port=config.proxy_port,
                        default_ip=config.host).start()  # fmt: skip
        config = dataclasses.replace(
            config,
            acme_directory=pebble.directory_url,
            acme_ca_bundle=str(pebble.ca_file),
            auto_https=True,
        )
    try:
        manage(config, "migrate", "--noinput")
        manage(config, "collectstatic", "--noinput")
        nodes = (f"{n.name}={config.host}:{n.port}" for n in config.nodes)
        sys.stdout.write(manage(config, "seed_demo", f"--proxy-port={config.proxy_port}", *nodes))
        subprocess.run(
            [config.python, "-m", "proxy.tls", "--dir", str(config.tls_dir),
             "--panel-host", config.panel_host, "--apps-domain", config.apps_domain,
             "--tls-port", str(config.proxy_tls_port)],
            cwd=REPO_ROOT, env=config.child_environment(), check=True, timeout=60,
        )  # fmt: skip
        base = f"http://{config.panel_host}:{config.proxy_port}"
        print(
            f"\nPanel:        {base}/  (HTTPS: https://{config.panel_host}:{config.proxy_tls_port}/)"
        )
        print(f"Admin:        {base}/admin/")
        print(f"Proxy admin:  http://{config.host}:{config.proxy_admin_port}/metrics")
        print(f"Trust the local CA: {config.tls_dir / 'ca.pem'} (e.g. curl --cacert)")
        if pebble is not None:
            root = config.tls_dir / "acme-root.pem"
            root.write_text(pebble.issuing_root())
            manage(config, "certificates", "auto", "--all", "--queue")
            print(
                f"Apps' own certificates come from the local ACME server (pebble, "
                f"{pebble.directory_url}); trust its root {root} for them "
                "(new on every demo start)."
            )
        else:
            print("Automatic HTTPS is off: `make pebble` installs the local ACME server.")
        if isolation.available:
            print(
                "App isolation: on (each app in a sandbox as its owner's uid; the panel as its own)"
            )
        else:
            print(
                f"App isolation: OFF: {isolation.reason}. Every app runs as your own user and can "
                "read your files and the panel's (NODE_APPS_SHARE_NODE_USER=1); run the demo as "
                "root, with bubblewrap, to sandbox them."
            )
        if args.setup_only:
            return 0
        procfile = write_procfile(config)
        print(f"Starting {procfile} with honcho; Ctrl-C stops everything.\n", flush=True)
        return run_honcho(config, procfile)
    except KeyboardInterrupt:
        return 130
    finally:
        _stop(group)
        if pebble is not None:
            pebble.stop()
        if redis is not None:
            redis.terminate()
            try:
                redis.wait(10)
            except subprocess.TimeoutExpired:
                redis.kill()


if __name__ == "__main__":
    sys.exit(main())
