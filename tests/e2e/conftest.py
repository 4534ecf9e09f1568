"""The whole platform, started once for the end-to-end tests: Redis, Celery worker and beat,
four nodes, the proxy; a staff operator and 50 users with mixed-case names, each with one app.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

import pytest

from proxy.tls import make_local_ca
from routing import canonical_host
from scripts.pebble import Pebble, binaries
from tests.e2e.harness import Platform, make_config, start_redis, wait_for_http
from tests.support import wait_until

USERS = 50
SETUP = """
import json
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.auth.hashers import make_password
from django.contrib.sessions.backends.db import SessionStore
from panel.accounts.actions import do_create_token
from panel.accounts.models import User
from panel.accounts.origin import Origin
from routing.pool.actions import do_add_backend

spec = json.loads({spec!r})
origin = Origin(via="cli")
operator = User.objects.create_user("Operator", password=spec["password"], is_staff=True)
operator_key = do_create_token(operator, actor=operator, origin=origin)[1]
out = {{"operator": operator_key, "users": {{}}, "sessions": {{}}}}
for index, (name, address) in enumerate(spec["nodes"]):
    state = "active" if index < 2 else "disabled"
    do_add_backend(name, address, actor=operator, origin=origin, state=state)
# One hash for all: the password hasher is slow on purpose, and 50 users share the password.
hashed = make_password(spec["password"])
for name in spec["users"]:
    user = User.objects.create(username=name, password=hashed)
    out["users"][name] = do_create_token(user, actor=user, origin=origin)[1]
    # A signed-in browser session, as the sign-in form would create it (the form itself is
    # exercised by test_sign_in_and_reload_from_the_web_tab and the browser test).
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    out["sessions"][name] = session.session_key
print(json.dumps(out))
"""


@dataclass
class Cast:
    password: str
    operator_token: str
    tokens: dict[str, str]  # username -> API token
    sessions: dict[str, str]  # username -> session key of a signed-in browser


def user_names() -> list[str]:
    """Mixed-case names, like people type them: IronHand00, jOEbUTY01, ..."""
    stems = ["IronHand", "JoeButy", "McFly", "deLaCruz", "OBrien"]
    return [f"{stems[i % len(stems)]}{i:02d}" for i in range(USERS)]


@pytest.fixture(scope="session")
def platform(tmp_path_factory) -> Platform:
    var_dir = tmp_path_factory.mktemp("platform")
    redis, urls = start_redis(var_dir)
    config = make_config(var_dir, redis.url, urls)
    # The local ACME server (automatic HTTPS, tests/e2e/test_https.py) checks the proxy's port.
    pebble = Pebble(var_dir / "pebble", http_port=config.proxy_port) if binaries() else None
    if pebble is not None:
        pebble.start()
        config = dataclasses.replace(
            config, acme_directory=pebble.directory_url, acme_ca_bundle=str(pebble.ca_file)
        )
    running = Platform(config, redis)
    running.pebble = pebble
    try:
        make_local_ca(config.tls_dir, config.panel_host, config.apps_domain)
        running.manage("migrate", "--noinput")
        running.manage("collectstatic", "--noinput")
        for name in ["worker", "beat", *(f"node-{n.name}" for n in config.nodes), "proxy"]:
            running.start(name)
        for node in config.nodes:
            wait_for_http(node.port, "/", host=config.panel_host, what=f"node {node.name}")
        yield running
    finally:
        running.stop_all()
        if pebble is not None:
            pebble.stop()
        redis.cleanup()


@pytest.fixture(scope="session")
def cast(platform: Platform) -> Cast:
    password = "e2e-pass-Xq7!v"
    spec = {
        "password": password,
        "nodes": [[n.name, f"127.0.0.1:{n.port}"] for n in platform.config.nodes],
        "users": user_names(),
    }
    out = json.loads(platform.django_script(SETUP.format(spec=json.dumps(spec))))
    # The pool was created with b1, b2 active: wait until the proxy holds that table.
    wait_until(
        lambda: platform.proxy_admin("/healthz").status == 200,
        60,
        interval=0.1,
        what="proxy ready with a route table",
    )
    return Cast(password, out["operator"], out["users"], out["sessions"])


IDN_INDEX = 7  # this user's app gets an internationalised domain


def typed_domain(username: str, index: int) -> str:
    """The domain as its owner types it on create: mixed case, sometimes Unicode."""
    if index == IDN_INDEX:
        return f"Bücher-{index:02d}.Example"
    if index % 2:
        return f"{username}.Apps.Localhost"
    return f"Shop-{index:02d}.{username}.Example.TEST"


def api(platform: Platform, method: str, path: str, token: str, body: dict | None = None):
    headers = {"Authorization": f"Token {token}", "Accept": "application/json"}
    data = None
    if body is not None:
        headers["Content-Type"] = "application/json"
        data = json.dumps(body).encode()
    return platform.via_proxy(
        method, path, host=platform.config.panel_host, headers=headers, body=data
    )


@pytest.fixture(scope="session")
def apps(platform: Platform, cast: Cast) -> dict[str, str]:
    """username -> canonical domain of the one app each user creates through the API."""
    created = {}
    for index, (username, token) in enumerate(cast.tokens.items()):
        response = api(
            platform, "POST", f"/api/v0/user/{username}/webapps/", token,
            {"domain_name": typed_domain(username, index)},
        )  # fmt: skip
        assert response.status == 201, response.text
        domain = response.json()["domain_name"]
        assert domain == canonical_host(typed_domain(username, index))
        created[username] = domain
    return created
