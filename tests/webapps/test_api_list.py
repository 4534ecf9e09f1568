"""GET|POST /api/v0/user/<username>/webapps/"""

import json

import pytest
from django.conf import settings

from panel.accounts.models import AuditEvent
from webapps.models import WebApp

pytestmark = pytest.mark.django_db

URL = "/api/v0/user/IronHand/webapps/"


def test_it_lists_the_owners_apps_as_a_plain_array(owner_api, owner_app, unicode_app):
    response = owner_api.get(URL)
    assert response.status_code == 200
    body = response.json()
    assert isinstance(body, list)
    assert [app["domain_name"] for app in body] == ["ironhand.example.com", "xn--bcher-kva.example"]
    assert body[1]["domain_display"] == "bücher.example"


def test_it_finds_the_user_in_any_case(owner_api, owner_app):
    response = owner_api.get("/api/v0/user/ironhand/webapps/")
    assert response.status_code == 200
    assert len(response.json()) == 1


def test_it_gives_the_fields_of_the_hosting_api(owner_api, owner_app):
    app = owner_api.get(URL).json()[0]
    assert {
        "id",
        "user",
        "domain_name",
        "domain_display",
        "python_version",
        "source_directory",
        "virtualenv_path",
        "wsgi_entry",
        "enabled",
        "backend",
        "reload_url",
        "api_reload_url",
        "last_reload",
    } <= set(app)
    assert app["user"] == "IronHand"
    assert app["api_reload_url"] == (
        "http://testserver/api/v0/user/IronHand/webapps/ironhand.example.com/reload/"
    )
    assert app["last_reload"] is None


def test_it_creates_an_app_from_json(owner_api):
    response = owner_api.post(
        URL,
        {"domain_name": "IronHand.example.com", "python_version": "python311"},
        format="json",
    )
    assert response.status_code == 201
    body = response.json()
    assert body["domain_name"] == "ironhand.example.com"
    assert body["python_version"] == "3.11"
    assert body["source_directory"] == str(settings.HOME_ROOT / "ironhand/ironhand.example.com")


def test_it_creates_an_app_from_a_form(owner_api):
    response = owner_api.post(
        URL, {"domain_name": "www.ironhand.org", "virtualenv_path": "venvs/site"}
    )
    assert response.status_code == 201
    assert WebApp.objects.get().virtualenv_path == str(settings.HOME_ROOT / "ironhand/venvs/site")


def test_it_refuses_an_invalid_domain_naming_the_problem(owner_api):
    response = owner_api.post(URL, {"domain_name": "panel.localhost"}, format="json")
    assert response.status_code == 400
    body = response.json()
    assert "control panel" in body["domain_name"][0]
    assert "control panel" in body["detail"]


def test_it_refuses_a_collision_with_a_clear_message(owner_api, owner_app):
    response = owner_api.post(URL, {"domain_name": "IRONHAND.example.com."}, format="json")
    assert response.status_code == 400
    assert "already used" in response.json()["detail"]


def test_it_refuses_unknown_fields(owner_api):
    response = owner_api.post(
        URL, {"domain_name": "ironhand.example.com", "owner": "mallory"}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["owner"] == ["Unknown field."]
    assert not WebApp.objects.exists()


@pytest.mark.parametrize(
    "body",
    [
        {"domain_name": 42},
        {"domain_name": ["ironhand.example.com"]},
        {"domain_name": "ironhand.example.com", "enabled": "maybe"},
        {"domain_name": "ironhand.example.com", "source_directory": {"a": 1}},
    ],
)
def test_it_refuses_wrong_types(owner_api, body):
    response = owner_api.post(URL, body, format="json")
    assert response.status_code == 400
    assert response.json()["detail"]


def test_it_refuses_a_body_that_is_not_an_object(owner_api):
    response = owner_api.post(URL, json.dumps(["x"]), content_type="application/json")
    assert response.status_code == 400


def test_it_requires_the_domain_name(owner_api):
    response = owner_api.post(URL, {}, format="json")
    assert response.status_code == 400
    assert "domain_name" in response.json()


def test_it_answers_401_without_credentials(client, owner_app):
    response = client.get(URL)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"


def test_it_gives_the_outsider_a_404_for_the_list_and_audits_it(outsider_api, owner_app):
    response = outsider_api.get(URL)
    assert response.status_code == 404
    assert response.json() == {"detail": "No such user here."}
    denied = AuditEvent.objects.get(outcome="denied")
    assert (denied.actor_username, denied.action) == ("mallory", "webapp.read")


def test_it_gives_the_outsider_a_404_for_a_create_under_another_user(outsider_api, owner):
    response = outsider_api.post(URL, {"domain_name": "mallory.example.com"}, format="json")
    assert response.status_code == 404
    assert not WebApp.objects.exists()
    assert AuditEvent.objects.filter(outcome="denied", action="webapp.create").exists()


def test_it_gives_staff_a_404_for_someone_elses_apps(staff_api, owner_app):
    assert staff_api.get(URL).status_code == 404


def test_it_lists_many_apps_in_a_constant_number_of_queries(owner, owner_api, owner_app):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from tests.conftest import CLI
    from webapps import actions

    actions.do_reload_webapp(owner_app, actor=owner, origin=CLI)
    owner_api.get(URL)  # the token's first use writes last_used_at once
    with CaptureQueriesContext(connection) as one:
        owner_api.get(URL)
    for n in range(5):
        app = actions.do_create_webapp(f"site{n}.ironhand.org", actor=owner, origin=CLI)
        actions.do_reload_webapp(app, actor=owner, origin=CLI)
    with CaptureQueriesContext(connection) as six:
        assert len(owner_api.get(URL).json()) == 6
    assert len(six) == len(one)
