"""Fixtures for the pool's tests: a Redis of the test's own that it may stop, flush or restart."""

from __future__ import annotations

import pytest

from routing import actions
from routing.models import Backend, Revision, RouteVersion
from webapps.actions import Origin
from webapps.models import Via

# --- database fixtures (tests marked django_db) ---------------------------------------------

PASSWORD = "correct horse battery staple"


@pytest.fixture
def pool_settings(settings, redis_server):
    """Point the panel at the test's own Redis, under a prefix of its own."""
    settings.REDIS_URL = redis_server.url
    settings.CELERY_BROKER_URL = redis_server.url
    settings.REDIS_PREFIX = "pooltest:"
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.ALLOWED_HOSTS = ["testserver", "panel.localhost"]
    return settings


@pytest.fixture
def operator(db, pool_settings):
    from webapps.models import User

    return User.objects.create_user("stella", password=PASSWORD, is_staff=True, is_superuser=True)


@pytest.fixture
def outsider(db, pool_settings):
    from webapps.models import User

    return User.objects.create_user("mallory", password=PASSWORD)


def make_apps(count: int, owner_name: str = "appowner") -> list[str]:
    """``count`` web apps (mixed-case owner on purpose); returns their canonical domains."""
    from webapps.models import User, WebApp

    owner, _ = User.objects.get_or_create(username=owner_name)
    domains = [f"app{i}.example.com" for i in range(count)]
    WebApp.objects.bulk_create(
        WebApp(owner=owner, domain=d, source_directory=f"/srv/{d}") for d in domains
    )
    return domains


CLI = Origin(via=Via.CLI)


@pytest.fixture
def two_backends(pool_settings):
    actions.do_add_backend(None, CLI, "b1", "127.0.0.1:9001")
    actions.do_add_backend(None, CLI, "b2", "127.0.0.1:9002")


def snapshot():
    """The pool, its version and its history: equal before and after a refused change."""
    rows = Backend.objects.order_by("name").values_list("name", "address", "weight", "state")
    return list(rows), RouteVersion.current().version, Revision.objects.count()
