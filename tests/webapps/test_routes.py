"""published_table(): the route table as the proxies see it, read from Redis."""

import pytest

from routing import ALGORITHM, Backend, RouteTable
from routing.publish import signature_key, table_key
from routing.signing import sign
from tests.routing.support import FORGER, PUBLISHER
from webapps.redis_client import client_for
from webapps.routes import published_table, serving_backend

TABLE = RouteTable(
    version=3,
    algorithm=ALGORITHM,
    backends=(Backend("b1", "127.0.0.1:9101"), Backend("b2", "127.0.0.1:9102", weight=2)),
)


# The tests' signing key is the trusted one (tests/conftest.py, hosting_settings).
pytestmark = pytest.mark.usefixtures("hosting_settings")


def store(settings, raw, key=PUBLISHER):
    data = raw.encode() if isinstance(raw, str) else raw
    prefix = settings.REDIS_PREFIX
    client_for(settings.REDIS_URL).mset(
        {table_key(prefix): data, signature_key(prefix): sign(data, key)}
    )


def test_it_reads_the_published_table(settings):
    store(settings, TABLE.to_json())
    assert published_table() == TABLE


@pytest.mark.parametrize("key", [None, FORGER])
def test_it_ignores_a_table_not_signed_by_a_trusted_key(settings, caplog, key):
    if key is None:
        client_for(settings.REDIS_URL).set(table_key(settings.REDIS_PREFIX), TABLE.to_json())
    else:
        store(settings, TABLE.to_json(), key=key)
    assert published_table() is None
    assert "not signed by a trusted key" in caplog.text


def test_it_has_no_table_before_one_is_published():
    assert published_table() is None


def test_it_ignores_an_invalid_table(settings, caplog):
    store(settings, '{"version": "three"}')
    assert published_table() is None
    assert "invalid" in caplog.text


def test_it_has_no_table_when_redis_is_unreachable(settings, caplog):
    from tests.support import free_port

    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    assert published_table() is None
    assert "cannot read the route table" in caplog.text


def test_it_names_the_backend_by_the_canonical_key():
    expected = TABLE.backend_for("ironhand.example.com").name
    assert serving_backend(TABLE, "ironhand.example.com") == expected
    assert serving_backend(TABLE, "IronHand.Example.com.") == expected


def test_it_names_no_backend_without_a_table_or_an_active_backend():
    assert serving_backend(None, "ironhand.example.com") == ""
    drained = RouteTable(4, ALGORITHM, (Backend("b1", "127.0.0.1:9101", state="draining"),))
    assert serving_backend(drained, "ironhand.example.com") == ""


@pytest.mark.django_db
def test_the_api_reports_the_backend_from_the_table(settings, owner_api, owner_app):
    store(settings, TABLE.to_json())
    app = owner_api.get("/api/v0/user/IronHand/webapps/ironhand.example.com/").json()
    assert app["backend"] == TABLE.backend_for("ironhand.example.com").name
