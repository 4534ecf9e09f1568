"""Automatic HTTPS end to end: an app with a custom domain asks for a certificate the way the
official client shapes it (``POST .../ssl/ {"cert_type": "letsencrypt-auto-renew"}``), the
Celery worker orders it from pebble, every proxy answers the challenge and presents the
certificate by SNI (a verifying TLS handshake against pebble's root); a forced renewal is
served by both proxies with its new serial."""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time

import pytest

from scripts.platform import REPO_ROOT
from tests.e2e.conftest import api
from tests.support import free_port, port_open, run_python, wait_until

pytestmark = pytest.mark.skipif(
    not os.path.exists("/usr/bin/pebble"), reason="pebble is not installed (make pebble)"
)


def handshake(port: int, domain: str, root_pem: str) -> str:
    """A verifying TLS handshake with SNI ``domain`` trusting only pebble's root: the serial."""
    ctx = ssl.create_default_context(cadata=root_pem)
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname=domain) as conn,
    ):
        return conn.getpeercert()["serialNumber"].lower().lstrip("0")


@pytest.fixture
def second_proxy(platform):
    """Another proxy on 127.0.0.2 at the same plain port: DNS decides which one pebble meets."""
    config = platform.config
    tls_port, admin_port = free_port(), free_port()
    var = config.var_dir
    argv = [
        sys.executable, "-m", "proxy",
        "--listen", f"127.0.0.2:{config.proxy_port}",
        "--tls-listen", f"127.0.0.1:{tls_port}",
        "--tls-cert", str(config.tls_dir / "cert.pem"),
        "--tls-key", str(config.tls_dir / "key.pem"),
        "--admin-listen", f"127.0.0.1:{admin_port}",
        "--panel-host", config.panel_host,
        "--state-file", str(var / "proxy2-routes.json"),
        "--tls-state-file", str(var / "proxy2-tls.json"),
    ]  # fmt: skip
    process = subprocess.Popen(
        # The proxy's environment: its Redis user's URL (PROXY_REDIS_URL), not on the argv.
        argv,
        cwd=REPO_ROOT,
        env=config.child_environment("proxy"),
        start_new_session=True,
    )
    wait_until(lambda: port_open("127.0.0.1", tls_port), 20, what="second proxy")
    yield tls_port
    os.killpg(process.pid, signal.SIGTERM)
    process.wait(20)


def test_an_app_gets_an_automatic_certificate_and_a_forced_renewal_reaches_both_proxies(
    platform, cast, second_proxy
):
    config = platform.config
    username, token = next(iter(cast.tokens.items()))
    typed = f"Secure-Shop.{username}.Example.TEST"
    created = api(platform, "POST", f"/api/v0/user/{username}/webapps/", token,
                  {"domain_name": typed})  # fmt: skip
    assert created.status == 201, created.text
    domain = created.json()["domain_name"]
    ssl_path = f"/api/v0/user/{username}/webapps/{typed}/ssl/"

    started = time.monotonic()
    asked = api(platform, "POST", ssl_path, token, {"cert_type": "letsencrypt-auto-renew"})
    assert asked.status == 200, asked.text

    def installed():
        info = api(platform, "GET", ssl_path, token).json()
        assert info["status"] != "failed", info
        return info if info["status"] == "installed" else None

    info = wait_until(installed, 60, interval=0.1, what="the worker's order")
    root = platform.pebble.issuing_root()
    for port in (config.proxy_tls_port, second_proxy):
        # Each proxy follows the certificate documents on its own: wait for both.
        wait_until(lambda p=port: handshake(p, domain, root) == info["serial"], 20,
                   what=f"the certificate served on {port}")  # fmt: skip
    print(f"\nrequest -> certificate served by both proxies: {time.monotonic() - started:.2f} s")
    assert info["cert_type"] == "letsencrypt-auto-renew" and info["next_renewal"]

    # The renewal's challenge goes to the second proxy; both serve the new certificate.
    platform.pebble.point(domain, "127.0.0.2")
    due_now = {**config.child_environment(), "ACME_RENEW_DAYS_BEFORE": "100000"}
    out = run_python(due_now, "manage.py", "certificates", "renew")
    assert "'renewed': 1" in out, out
    renewed = api(platform, "GET", ssl_path, token).json()
    assert renewed["serial"] != info["serial"]
    for port in (config.proxy_tls_port, second_proxy):
        wait_until(lambda p=port: handshake(p, domain, root) == renewed["serial"], 20,
                   what=f"renewed certificate on {port}")  # fmt: skip
    assert (
        json.loads(platform.proxy_admin("/tls").text)["certificates"][domain]["serial"]
        == (renewed["serial"])
    )
