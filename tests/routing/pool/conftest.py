"""Fixtures for the pool's tests: the one cast (tests/conftest.py) on a Redis of the test's own
that it may stop, flush or restart."""

from __future__ import annotations

import pytest

from routing.pool import actions
from routing.pool.models import Backend, Revision, RouteVersion
from tests.conftest import CLI

# --- database fixtures (tests marked django_db) ---------------------------------------------


@pytest.fixture
def pool_settings(hosting_settings, redis_server):
    """Point the panel at the test's own Redis, under a prefix of its own."""
    settings = hosting_settings
    settings.REDIS_URL = redis_server.url
    settings.ROUTES_REDIS_URL = redis_server.url
    settings.CELERY_BROKER_URL = redis_server.url
    settings.REDIS_PREFIX = "pooltest:"
    settings.ALLOWED_HOSTS = ["testserver", "panel.localhost"]
    return settings


def make_apps(count: int, owner_name: str = "appowner") -> list[str]:
    """``count`` web apps (mixed-case owner on purpose); returns their canonical domains."""
    from panel.accounts.models import User
    from webapps.models import WebApp

    owner, _ = User.objects.get_or_create(username=owner_name)
    domains = [f"app{i}.example.com" for i in range(count)]
    WebApp.objects.bulk_create(
        WebApp(owner=owner, domain=d, source_directory=f"/srv/{d}") for d in domains
    )
    return domains


@pytest.fixture
def two_backends(pool_settings):
    actions.do_add_backend("b1", "127.0.0.1:9001", actor=None, origin=CLI)
    actions.do_add_backend("b2", "127.0.0.1:9002", actor=None, origin=CLI)


def snapshot():
    """The pool, its version and its history: equal before and after a refused change."""
    rows = Backend.objects.order_by("name").values_list("name", "address", "weight", "state")
    return list(rows), RouteVersion.current().version, Revision.objects.count()
