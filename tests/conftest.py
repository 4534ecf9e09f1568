"""Fixtures for the whole suite (the private Redis starts earlier: tests/private_redis.py).

The one cast every app's tests use:
- ``owner`` (IronHand, mixed case on purpose) owns ``owner_app`` (IronHand.example.com) and
  ``unicode_app`` (bücher.example);
- ``outsider`` (mallory) is signed in and has a token, but owns nothing of the owner's;
- ``staff`` (stella) is staff and superuser: the admin and the staff API are hers, other
  people's apps through the API are not.
``*_api`` are API clients holding a token of theirs, ``*_web`` signed-in browsers
(``admin_web``: staff's). The cast's
fixtures use ``hosting_settings``: a HOME_ROOT and a Redis key prefix of the test's own on the
run's private Redis.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from django.conf import settings
from rest_framework.test import APIClient

from panel.accounts.origin import Origin
from routing.connect import sync_client
from tests.support import RedisServer

PASSWORD = "correct horse battery staple"
# The origin of a change made on the command line (and by the tests' set-up).
CLI = Origin(via="cli")


@pytest.fixture(autouse=True, scope="session")
def static_root():
    # WhiteNoise warns (an error under this suite) when STATIC_ROOT is missing, and a fresh
    # clone has not run collectstatic.
    Path(settings.STATIC_ROOT).mkdir(parents=True, exist_ok=True)


@pytest.fixture
def redis_server():
    """A redis-server of the test's own, which it may stop, flush or restart."""
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def redis_client(redis_server):
    client = sync_client(redis_server.url, timeout=5)
    try:
        yield client
    finally:
        client.close()


# --- the panel's settings and cast ----------------------------------------------------------


@pytest.fixture(scope="session")
def route_key_file(tmp_path_factory) -> Path:
    """The test publisher's signing key (tests.routing.support.PUBLISHER) as a PEM file."""
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        NoEncryption,
        PrivateFormat,
    )

    from tests.routing.support import PUBLISHER

    path = tmp_path_factory.mktemp("route-keys") / "route-table.key"
    path.write_bytes(PUBLISHER.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    path.chmod(0o600)
    return path


@pytest.fixture
def hosting_settings(settings, tmp_path, route_key_file):
    from routing.signing import public_key_text
    from tests.routing.support import PUBLISHER

    # Route tables are signed with PUBLISHER and must verify with it (tests sign with it too).
    settings.ROUTES_SIGNING_KEY_FILE = str(route_key_file)
    settings.ROUTES_TRUSTED_KEYS = public_key_text(PUBLISHER.public_key())
    settings.HOME_ROOT = (tmp_path / "home").resolve()
    settings.REDIS_PREFIX = f"test-{uuid.uuid4().hex[:12]}:"
    settings.PANEL_HOST = "panel.localhost"
    settings.APPS_DOMAIN = "apps.localhost"
    settings.RESERVED_DOMAINS = ["localhost", "www.localhost", "status.example.com"]
    settings.WEBAPPS_RELOADER = "webapps.reload.NoNodeReloader"
    settings.NODE_NAME = ""
    settings.RELOAD_THROTTLE_PER_MINUTE = 40
    settings.ALLOWED_HOSTS = ["panel.localhost", "testserver"]
    # The cast signs in many times; the production hasher is deliberately slow.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    return settings


def make_user(username: str, **extra):
    from panel.accounts.models import User

    return User.objects.create_user(username=username, password=PASSWORD, **extra)


def token_for(user, **kwargs) -> str:
    from panel.accounts.actions import do_create_token

    return do_create_token(user, actor=user, origin=CLI, **kwargs)[1]


def token_client(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token_for(user)}")
    return client


@pytest.fixture
def owner(db, hosting_settings):
    return make_user("IronHand", email="iron@example.com")


@pytest.fixture
def outsider(db, hosting_settings):
    return make_user("mallory")


@pytest.fixture
def staff(db, hosting_settings):
    return make_user("stella", is_staff=True, is_superuser=True)


@pytest.fixture
def owner_app(owner):
    from webapps.actions import do_create_webapp

    return do_create_webapp("IronHand.example.com", actor=owner, origin=CLI)


@pytest.fixture
def unicode_app(owner):
    from webapps.actions import do_create_webapp

    return do_create_webapp("bücher.example", actor=owner, origin=CLI)


@pytest.fixture
def owner_api(owner) -> APIClient:
    return token_client(owner)


@pytest.fixture
def outsider_api(outsider) -> APIClient:
    return token_client(outsider)


@pytest.fixture
def staff_api(staff) -> APIClient:
    return token_client(staff)


@pytest.fixture
def owner_web(client, owner):
    client.force_login(owner)
    return client


@pytest.fixture
def outsider_web(client, outsider):
    client.force_login(outsider)
    return client


@pytest.fixture
def admin_web(client, staff):
    client.force_login(staff)
    return client
