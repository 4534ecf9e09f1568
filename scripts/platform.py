"""The processes of the platform on one machine, as one table shared by `make demo` and the
end-to-end tests, so that what the tests start is what a newcomer runs.

Pure: `PlatformConfig` in, command lines and environments out. Starting them is the caller's
job (honcho for the demo, the test harness for the end-to-end suite).

Each process gets the Redis URL of its own user (scripts/redis_users.py) in its environment,
never on its command line (which every local user can read): `REDIS_URL` is the panel's (the
nodes' panels) or Celery's (worker, beat), `ROUTES_REDIS_URL` the publisher's (worker),
`NODE_REDIS_URL` and `PROXY_REDIS_URL` the reader's. `python -m scripts.platform run NAME
ENV_FILE` starts one process of the table with the environment in ENV_FILE (a JSON file of mode
0600 that the demo writes), so honcho's Procfile holds no password either. With no
`redis_urls` every process uses `redis_url` (a Redis without access control).
All processes share `VAR_DIR`, so they find the route-table key pair in `VAR_DIR/keys/`.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class NodeSpec:
    name: str
    port: int


@dataclass(frozen=True)
class PlatformConfig:
    var_dir: Path
    redis_url: str
    database_url: str
    panel_host: str = "panel.localhost"
    apps_domain: str = "apps.localhost"
    host: str = "127.0.0.1"
    proxy_port: int = 8080
    proxy_tls_port: int = 8443
    proxy_admin_port: int = 8081
    nodes: tuple[NodeSpec, ...] = field(
        default_factory=lambda: tuple(NodeSpec(f"b{i}", 9000 + i) for i in range(1, 5))
    )
    republish_seconds: int = 30
    python: str = sys.executable
    # The host cannot sandbox apps (not root, no bubblewrap): the nodes are told, in so many
    # words, that apps share their user, or they refuse to start.
    apps_share_node_user: bool = False
    # User -> URL (scripts.redis_users.urls): reader, publisher, panel, celery, admin, and one
    # per fleet member (node-<name>, proxy-<name>: see members()).
    redis_urls: dict[str, str] | None = None
    # The proxy's name in the fleet (PROXY_NAME): its Redis user is proxy-<name>.
    proxy_name: str = "proxy"

    def redis_url_for(self, role: str) -> str:
        """The URL of ``role``'s Redis user (``redis_url`` when Redis has no users)."""
        return self.redis_urls[role] if self.redis_urls else self.redis_url

    def members(self) -> tuple[tuple[str, str], ...]:
        """The fleet's members, ``(role, name)``: each has a Redis user of its own."""
        return (*(("node", n.name) for n in self.nodes), ("proxy", self.proxy_name))

    def member_url(self, role: str, name: str) -> str:
        """Member ``name``'s URL: its own user, which may write its heartbeat; the reader's
        when Redis has none for it (it routes, but is missing from the fleet page)."""
        from scripts.redis_users import member_user

        user = member_user(role, name)
        if self.redis_urls and user in self.redis_urls:
            return self.redis_urls[user]
        return self.redis_url_for("reader")

    # A local ACME server (scripts/pebble.py): its directory and the CA its listener uses.
    acme_directory: str = ""
    acme_ca_bundle: str = ""
    auto_https: bool = False

    @property
    def home_root(self) -> Path:
        return self.var_dir / "home"

    @property
    def tls_dir(self) -> Path:
        return self.var_dir / "tls"

    def node_url(self, name: str) -> str:
        node = next(n for n in self.nodes if n.name == name)
        return f"http://{self.host}:{node.port}"

    def environment(self) -> dict[str, str]:
        """Settings shared by every process (the panel reads them in panel/settings.py)."""
        return {
            "VAR_DIR": str(self.var_dir),
            "HOME_ROOT": str(self.home_root),
            "REDIS_URL": self.redis_url_for("panel"),
            "DATABASE_URL": self.database_url,
            "PANEL_HOST": self.panel_host,
            "APPS_DOMAIN": self.apps_domain,
            "ROUTES_REPUBLISH_SECONDS": str(self.republish_seconds),
            "PYTHONUNBUFFERED": "1",
            "DJANGO_SETTINGS_MODULE": "panel.settings",
            "NODE_APPS_SHARE_NODE_USER": "1" if self.apps_share_node_user else "0",
            "ACME_DIRECTORY_URL": self.acme_directory,
            "ACME_CA_BUNDLE": self.acme_ca_bundle,
            # The demo gives every new app its certificate by itself.
            "TLS_AUTO_FOR_NEW_APPS": "1" if self.auto_https else "0",
            # A local CA answers at once: look for due and failed orders every half minute.
            **(
                {"ACME_RENEW_CHECK_SECONDS": "30", "ACME_RETRY_SECONDS": "30"}
                if self.acme_directory
                else {}
            ),
        }

    def child_environment(self, name: str | None = None) -> dict[str, str]:
        """The environment of a child process: ours, the shared settings, and process
        ``name``'s own (``process_environment``); a variable set to "" is removed."""
        env = dict(os.environ)
        env.update(self.environment())
        env["PYTHONPATH"] = str(REPO_ROOT)
        if name is not None:
            env.update(process_environment(self, name))
        return {k: v for k, v in env.items() if v != ""}


def process_environment(config: PlatformConfig, name: str) -> dict[str, str]:
    """What process ``name`` adds to ``environment()``: the Redis URLs of its own users."""
    if name in ("worker", "beat"):
        env = {"REDIS_URL": config.redis_url_for("celery")}
        if name == "worker":
            env["ROUTES_REDIS_URL"] = config.redis_url_for("publisher")
        return env
    if name.startswith("node-"):
        return {"NODE_REDIS_URL": config.member_url("node", name.removeprefix("node-"))}
    if name == "proxy":
        # The proxy is no Django process: it needs neither the panel's Redis user nor the
        # database.
        return {
            "PROXY_NAME": config.proxy_name,
            "PROXY_REDIS_URL": config.member_url("proxy", config.proxy_name),
            "REDIS_URL": "",
            "DATABASE_URL": "",
        }
    return {}


def process_table(config: PlatformConfig) -> dict[str, list[str]]:
    """Every long-running process, by name, as an argv to run from the repository root."""
    py = config.python
    var = config.var_dir
    table: dict[str, list[str]] = {
        "worker": [py, "-m", "celery", "-A", "panel", "worker", "--loglevel", "INFO",
                   "--concurrency", "1", "--hostname", "worker@%h"],
        "beat": [py, "-m", "celery", "-A", "panel", "beat", "--loglevel", "INFO",
                 "--schedule", str(var / "celerybeat-schedule")],
    }  # fmt: skip
    for node in config.nodes:
        table[f"node-{node.name}"] = [
            py, "manage.py", "runnode",
            "--name", node.name,
            "--listen", f"{config.host}:{node.port}",
            "--run-dir", str(var / "run" / node.name),
            "--log-dir", str(var / "log" / node.name),
        ]  # fmt: skip
    table["proxy"] = [
        py, "-m", "proxy",
        "--listen", f"{config.host}:{config.proxy_port}",
        "--tls-listen", f"{config.host}:{config.proxy_tls_port}",
        "--tls-cert", str(config.tls_dir / "cert.pem"),
        "--tls-key", str(config.tls_dir / "key.pem"),
        "--admin-listen", f"{config.host}:{config.proxy_admin_port}",
        "--panel-host", config.panel_host,
        "--state-file", str(var / "proxy-routes.json"),
        "--tls-state-file", str(var / "proxy-tls.json"),
    ]  # fmt: skip
    return table


def run(name: str, env_file: Path) -> None:
    """Replace this process with process ``name`` of the table, in the environment that
    ``env_file`` holds (``{"argv": {name: argv}, "env": {name: env}}``, written by the demo)."""
    data = json.loads(Path(env_file).read_text())
    argv = data["argv"][name]
    env = dict(os.environ)
    env.update(data["env"][name])
    env = {k: v for k, v in env.items() if v != ""}
    os.chdir(REPO_ROOT)
    os.execvpe(argv[0], argv, env)


def write_launch_file(config: PlatformConfig, path: Path) -> Path:
    """Every process's argv and environment, for ``run`` (mode 0600: it holds passwords)."""
    table = process_table(config)
    data = {
        "argv": table,
        "env": {
            name: {**config.environment(), **process_environment(config, name)} for name in table
        },
    }
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle)
    path.chmod(0o600)
    return path


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] != "run":
        sys.exit("usage: python -m scripts.platform run NAME LAUNCH_FILE")
    run(sys.argv[2], Path(sys.argv[3]))
