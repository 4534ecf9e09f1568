"""An app's server settings (workers, threads, worker timeout) through the API: the owner's
choice within the operator's limits, form and JSON bodies alike."""

import pytest

from panel.accounts.models import AuditEvent
from webapps.models import WebApp

pytestmark = pytest.mark.django_db

LIST = "/api/v0/user/IronHand/webapps/"
URL = "/api/v0/user/IronHand/webapps/ironhand.example.com/"
FIELDS = ("workers", "threads", "worker_timeout")


@pytest.fixture(autouse=True)
def _limits(settings):
    settings.NODE_MAX_WORKERS_PER_APP = 4
    settings.NODE_MAX_THREADS_PER_APP = 8
    settings.NODE_MAX_TIMEOUT_PER_APP = 120


def _send(client, method, url, body, encoding):
    if encoding == "json":
        return getattr(client, method)(url, body, format="json")
    return getattr(client, method)(url, body)  # multipart, as a form would


def test_a_new_app_has_the_platform_defaults(owner_api, owner_app):
    body = owner_api.get(URL).json()
    assert {name: body[name] for name in FIELDS} == dict.fromkeys(FIELDS)


@pytest.mark.parametrize("encoding", ["json", "form"])
def test_good_values_are_stored_and_returned(owner_api, owner_app, encoding):
    response = _send(
        owner_api, "patch", URL, {"workers": 3, "threads": 4, "worker_timeout": 90}, encoding
    )
    assert response.status_code == 200, response.content
    assert {name: response.json()[name] for name in FIELDS} == {
        "workers": 3, "threads": 4, "worker_timeout": 90,
    }  # fmt: skip
    owner_app.refresh_from_db()
    assert (owner_app.workers, owner_app.threads, owner_app.worker_timeout) == (3, 4, 90)
    event = AuditEvent.objects.filter(action="webapp.update").latest("id")
    assert event.detail["changed"]["workers"] == [None, 3]


def test_the_limits_themselves_are_allowed(owner_api, owner_app):
    response = owner_api.patch(
        URL, {"workers": 4, "threads": 8, "worker_timeout": 120}, format="json"
    )
    assert response.status_code == 200, response.content


@pytest.mark.parametrize("encoding", ["json", "form"])
@pytest.mark.parametrize(
    ("field", "value", "setting"),
    [
        ("workers", 5, "NODE_MAX_WORKERS_PER_APP"),
        ("threads", 9, "NODE_MAX_THREADS_PER_APP"),
        ("worker_timeout", 121, "NODE_MAX_TIMEOUT_PER_APP"),
    ],
)
def test_a_value_past_the_limit_is_a_400_naming_it(
    owner_api, owner_app, encoding, field, value, setting
):
    response = _send(owner_api, "patch", URL, {field: value}, encoding)
    assert response.status_code == 400
    (message,) = response.json()[field]
    assert setting in message and "at most" in message
    owner_app.refresh_from_db()
    assert getattr(owner_app, field) is None


def test_the_limit_follows_the_operators_setting(owner_api, owner_app, settings):
    settings.NODE_MAX_WORKERS_PER_APP = 2
    response = owner_api.patch(URL, {"workers": 3}, format="json")
    assert "at most 2 (NODE_MAX_WORKERS_PER_APP)" in response.json()["workers"][0]


def test_create_checks_the_limits_too(owner_api):
    response = owner_api.post(
        LIST, {"domain_name": "ironhand.example.com", "threads": 9}, format="json"
    )
    assert response.status_code == 400
    assert "NODE_MAX_THREADS_PER_APP" in response.json()["threads"][0]
    assert not WebApp.objects.exists()
    response = owner_api.post(
        LIST, {"domain_name": "ironhand.example.com", "threads": 4}, format="json"
    )
    assert response.status_code == 201
    assert response.json()["threads"] == 4


@pytest.mark.parametrize(
    ("encoding", "value"),
    [
        ("json", "4"),
        ("json", 4.0),
        ("json", 2.5),
        ("json", True),
        ("json", [4]),
        ("form", "4.0"),
        ("form", " 4"),
        ("form", "four"),
        ("form", "\u0664"),  # ARABIC-INDIC DIGIT FOUR
        ("form", "-1"),
    ],
)
def test_a_non_integer_is_a_400(owner_api, owner_app, encoding, value):
    response = _send(owner_api, "patch", URL, {"workers": value}, encoding)
    assert response.status_code == 400
    assert "workers" in response.json()
    owner_app.refresh_from_db()
    assert owner_app.workers is None


@pytest.mark.parametrize(
    ("field", "value"), [("workers", 0), ("threads", 0), ("worker_timeout", 4)]
)
def test_a_value_below_the_least_is_a_400(owner_api, owner_app, field, value):
    response = owner_api.patch(URL, {field: value}, format="json")
    assert response.status_code == 400
    assert field in response.json()


@pytest.mark.parametrize("encoding", ["json", "form"])
def test_a_patch_of_one_setting_keeps_the_others(owner_api, owner_app, encoding):
    owner_api.patch(URL, {"workers": 3, "threads": 2, "worker_timeout": 30}, format="json")
    response = _send(owner_api, "patch", URL, {"threads": 6}, encoding)
    assert response.status_code == 200
    owner_app.refresh_from_db()
    assert (owner_app.workers, owner_app.threads, owner_app.worker_timeout) == (3, 6, 30)
    assert owner_app.enabled is True


@pytest.mark.parametrize(("encoding", "empty"), [("json", None), ("form", "")])
def test_null_or_empty_goes_back_to_the_default(owner_api, owner_app, encoding, empty):
    owner_api.patch(URL, {"workers": 3}, format="json")
    response = _send(owner_api, "patch", URL, {"workers": empty}, encoding)
    assert response.status_code == 200
    assert response.json()["workers"] is None
    owner_app.refresh_from_db()
    assert owner_app.workers is None


def test_the_schema_describes_them(owner_api):
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    components = schema["components"]["schemas"]
    for component in ("WebApp", "PatchedWebAppUpdate", "WebAppCreate"):
        properties = components[component]["properties"]
        for name in FIELDS:
            assert properties[name]["type"] == "integer", (component, name)
            assert properties[name].get("nullable") is True, (component, name)
