"""The cast and the stage for the panel's tests.

- ``owner`` (IronHand, mixed case on purpose) owns ``owner_app`` (IronHand.example.com) and
  ``unicode_app`` (bücher.example);
- ``outsider`` (mallory) is signed in and has a token, but owns nothing of the owner's;
- ``staff`` (stella) is staff: the admin is hers, other people's apps through the API are not.
Every test gets its own HOME_ROOT and its own Redis key prefix on the run's private Redis.
"""

from __future__ import annotations

import uuid

import pytest
from rest_framework.test import APIClient

from webapps import actions
from webapps.models import User, Via

PASSWORD = "correct horse battery staple"


@pytest.fixture(autouse=True)
def hosting_settings(settings, tmp_path):
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


def make_user(username: str, **extra) -> User:
    return User.objects.create_user(username=username, password=PASSWORD, **extra)


CLI = actions.Origin(via=Via.CLI)


@pytest.fixture
def owner(db) -> User:
    return make_user("IronHand", email="iron@example.com")


@pytest.fixture
def outsider(db) -> User:
    return make_user("mallory")


@pytest.fixture
def staff(db) -> User:
    return make_user("stella", is_staff=True)


@pytest.fixture
def owner_app(owner):
    return actions.do_create_webapp(owner, domain="IronHand.example.com", origin=CLI)


@pytest.fixture
def unicode_app(owner):
    return actions.do_create_webapp(owner, domain="bücher.example", origin=CLI)


def token_for(user: User, **kwargs) -> str:
    return actions.do_create_token(user, origin=CLI, **kwargs)[1]


def token_client(user: User) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token_for(user)}")
    return client


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
