"""The processes of the platform on one machine, as one table shared by `make demo` and the
end-to-end tests, so that what the tests start is what a newcomer runs.

Pure: `PlatformConfig` in, command lines and environments out. Starting them is the caller's
job (honcho for the demo, the test harness for the end-to-end suite).
"""

from __future__ import annotations

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
            "REDIS_URL": self.redis_url,
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

    def child_environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.environment())
        env["PYTHONPATH"] = str(REPO_ROOT)
        return env


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
        "--redis", config.redis_url,
        "--panel-host", config.panel_host,
        "--state-file", str(var / "proxy-routes.json"),
        "--tls-state-file", str(var / "proxy-tls.json"),
    ]  # fmt: skip
    return table
