"""PythonAnywhere's official client, ``pythonanywhere-core`` (pinned, unmodified), over HTTPS
through the proxy for the life of an app: create (a form POST, then a form PATCH), the default
static files mappings, reload, get, list, log files (list, delete), set_ssl/get_ssl_info (then
the proxy presents that certificate by SNI), patch (password protection), delete. Its calls
reach the panel on whichever node the proxy picks, and the reload on the node that serves the
app.
"""

from __future__ import annotations

import base64
import json
import socket
import ssl

import pytest
import trustme

from tests.e2e.harness import Platform
from tests.support import run_python, wait_until

pytestmark = pytest.mark.timeout(900)


def client(platform: Platform, token: str, username: str, *args: str) -> object:
    config = platform.config
    env = {
        **config.child_environment(),
        "PYTHONANYWHERE_SITE": f"{config.panel_host}:{config.proxy_tls_port}",
        "PYTHONANYWHERE_USERNAME": username,
        "API_TOKEN": token,
        "REQUESTS_CA_BUNDLE": str(config.tls_dir / "ca.pem"),
    }
    return json.loads(run_python(env, "-m", "tests.e2e.official_client", *args))


def presented(platform: Platform, name: str) -> bytes:
    """The certificate the proxy's HTTPS port presents for ``name`` by SNI (DER)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    address = ("127.0.0.1", platform.config.proxy_tls_port)
    with (
        socket.create_connection(address, timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=name) as conn,
    ):
        return conn.getpeercert(binary_form=True) or b""


def site(platform: Platform, domain: str, headers: dict[str, str] | None = None):
    return platform.via_proxy("GET", "/", host=domain, headers=headers)


def test_the_official_client_runs_an_app_from_create_to_delete(platform, cast):
    username = sorted(cast.tokens)[-1]
    token = cast.tokens[username]
    domain = f"official-client.{username.lower()}.example.test"
    project = platform.config.home_root / username.lower() / domain

    def run(*args: str):
        return client(platform, token, username, *args)

    assert run("create", domain, str(project)) == "created"
    app = run("get", domain)
    assert (app["domain_name"], app["enabled"], app["source_directory"]) == (
        domain,
        True,
        str(project),
    )
    assert app["python_version"]  # "python311" as the client sends it, stored as "3.11"
    assert domain in [each["domain_name"] for each in run("list", domain)]

    for name in ("static", "media"):
        (project / name).mkdir()
    (project / "static" / "site.css").write_text("body { color: teal }\n")
    assert run("static", domain, str(project)) == "mapped"

    assert run("reload", domain) == "reloaded"
    response = site(platform, domain)
    assert response.status == 200 and b"Hello from your new web app" in response.body
    css = platform.via_proxy("GET", "/static/site.css", host=domain)
    assert (css.status, css.body) == (200, b"body { color: teal }\n")

    logs = run("logs", domain)
    assert set(logs) == {"access", "error", "server"}
    assert 0 in logs["server"]
    assert run("delete_log", domain, "server") == "deleted"

    ca = trustme.CA()
    leaf = ca.issue_cert(domain)
    tls = platform.config.var_dir / "official-client-tls"
    tls.mkdir()
    (tls / "cert.pem").write_bytes(b"".join(p.bytes() for p in leaf.cert_chain_pems))
    (tls / "key.pem").write_bytes(leaf.private_key_pem.bytes())
    assert run("set_ssl", domain, str(tls)) == "set"
    info = run("get_ssl_info", domain)
    assert info["not_after"] and domain in info["subject_alternate_names"]
    wanted = ssl.PEM_cert_to_DER_cert(leaf.cert_chain_pems[0].bytes().decode())
    wait_until(
        lambda: presented(platform, domain) == wanted, 60, interval=0.5, what="certificate by SNI"
    )

    protected = run("protect", domain)
    assert protected["password_protection_enabled"] is True
    assert protected["enabled"] is True
    assert "password_protection_password" not in protected
    wait_until(
        lambda: site(platform, domain).status == 401, 30, interval=0.2, what="protection applied"
    )
    assert site(platform, domain).headers["www-authenticate"].startswith("Basic realm=")
    credentials = base64.b64encode(b"staging:open sesame").decode()
    response = site(platform, domain, {"Authorization": f"Basic {credentials}"})
    assert response.status == 200
    # The panel's reload URL is not behind the app's password.
    assert run("reload", domain) == "reloaded"

    run("unprotect", domain)
    wait_until(lambda: site(platform, domain).status == 200, 30, interval=0.2, what="unprotected")

    assert run("delete", domain) == "deleted"
    wait_until(lambda: site(platform, domain).status == 404, 30, interval=0.2, what="app gone")
