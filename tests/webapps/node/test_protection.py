"""A real node in front of password-protected and disabled apps (``manage.py runnode``)."""

from __future__ import annotations

import base64
import json

import pytest

from tests.webapps.node.support import add_apps, answer_app, manage, write_app
from webapps.node.control import call

PROTECT = """
import json
from panel.accounts.origin import Origin
from webapps import actions
from webapps.models import WebApp

spec = json.loads({spec!r})
webapp = WebApp.objects.get(domain=spec["domain"])
owner = webapp.owner
actions.do_update_webapp(webapp, spec["changes"], actor=owner, origin=Origin(via="cli"))
"""


def change(env, domain: str, **changes) -> None:
    manage(
        env, "shell", "-c", PROTECT.format(spec=json.dumps({"domain": domain, "changes": changes}))
    )


def basic(username: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@pytest.fixture
def node(platform):
    apps = []
    for domain in ("alice.apps.localhost", "shop.example.com"):
        source = write_app(platform.home, "Alice", domain, answer_app(f"hello {domain}"))
        apps.append((domain, str(source)))
    add_apps(platform.env, {"Alice": apps})
    change(
        platform.env,
        "alice.apps.localhost",
        password_protection_enabled=True,
        password_protection_username="staging",
        password_protection_password="open sesame",
    )
    change(platform.env, "shop.example.com", enabled=False)
    return platform.node("b1", "--no-routes", "--cache-seconds", "0")


def test_a_protected_app_asks_for_credentials_and_starts_nothing(node):
    status, headers, body = node.request("alice.apps.localhost")
    assert status == 401
    assert headers["WWW-Authenticate"] == 'Basic realm="alice.apps.localhost", charset="UTF-8"'
    assert "Password required" in body
    assert node.status() == []


def test_wrong_credentials_get_401(node):
    for username, password in [("staging", "open sesam"), ("Staging", "open sesame")]:
        status, _, _ = node.request("alice.apps.localhost", headers=basic(username, password))
        assert status == 401
    assert node.status() == []


def test_the_right_credentials_reach_the_app(node):
    for _ in range(2):  # the second from the node's cache of verified credentials
        status, _, body = node.request(
            "alice.apps.localhost", headers=basic("staging", "open sesame")
        )
        assert (status, body) == (200, "hello alice.apps.localhost")


def test_an_unprotected_app_on_the_same_node_needs_nothing(node):
    change(node.env, "shop.example.com", enabled=True)
    status, _, body = node.request("shop.example.com")
    assert (status, body) == (200, "hello shop.example.com")


def test_the_panel_on_the_node_is_not_protected(node):
    status, _, _ = node.request("panel.localhost", "/accounts/login/")
    assert status == 200


def test_a_disabled_app_gets_a_page_saying_so_and_starts_nothing(node):
    status, headers, body = node.request("shop.example.com")
    assert status == 503
    assert "This web app is disabled" in body and "shop.example.com" in body
    assert headers["X-Backend"] == "b1"
    assert node.status() == []


def test_a_disabled_app_is_not_reloaded(node):
    answer = call(node.control_socket, {"op": "reload", "domain": "shop.example.com"}, timeout=10)
    assert answer["status"] == "ERROR"
    assert "no enabled app shop.example.com" in answer["message"]


def test_enabling_it_again_serves_it(node):
    assert node.request("shop.example.com")[0] == 503
    change(node.env, "shop.example.com", enabled=True)
    status, _, body = node.request("shop.example.com")
    assert (status, body) == (200, "hello shop.example.com")
