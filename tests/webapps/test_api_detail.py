"""GET|PATCH|PUT|DELETE /api/v0/user/<username>/webapps/<domain>/"""

import pytest

from panel.accounts.models import AuditEvent
from webapps.models import WebApp

pytestmark = pytest.mark.django_db

URL = "/api/v0/user/IronHand/webapps/ironhand.example.com/"


@pytest.mark.parametrize(
    "spelling",
    [
        "ironhand.example.com",
        "IronHand.Example.com",
        "ironhand.example.com.",
        "%69ronhand.example.com",
    ],
)
def test_it_reads_an_app_by_any_spelling(owner_api, owner_app, spelling):
    response = owner_api.get(f"/api/v0/user/IronHand/webapps/{spelling}/")
    assert response.status_code == 200
    assert response.json()["domain_name"] == "ironhand.example.com"


@pytest.mark.parametrize(
    "spelling", ["b%C3%BCcher.example", "xn--bcher-kva.example", "B%C3%9CCHER.example"]
)
def test_it_reads_a_unicode_app_by_either_form(owner_api, unicode_app, spelling):
    response = owner_api.get(f"/api/v0/user/IronHand/webapps/{spelling}/")
    assert response.status_code == 200
    assert response.json()["domain_display"] == "bücher.example"


def test_it_patches_with_a_form_body(owner_api, owner_app):
    response = owner_api.patch(URL, {"enabled": "false", "python_version": "3.12"})
    assert response.status_code == 200
    assert (response.json()["enabled"], response.json()["python_version"]) == (False, "3.12")


def test_it_patches_with_json(owner_api, owner_app):
    response = owner_api.patch(URL, {"wsgi_entry": "site.wsgi:app"}, format="json")
    assert response.status_code == 200
    assert WebApp.objects.get().wsgi_entry == "site.wsgi:app"


def test_it_accepts_put_as_a_partial_update(owner_api, owner_app):
    response = owner_api.put(URL, {"virtualenv_path": "venv"}, format="json")
    assert response.status_code == 200
    assert response.json()["virtualenv_path"].endswith("/ironhand/venv")


def test_it_refuses_a_source_directory_outside_the_home(owner_api, owner_app):
    response = owner_api.patch(URL, {"source_directory": "/etc"}, format="json")
    assert response.status_code == 400
    assert "outside your home" in response.json()["source_directory"][0]


def test_it_refuses_to_change_the_domain(owner_api, owner_app):
    response = owner_api.patch(URL, {"domain_name": "other.example"}, format="json")
    assert response.status_code == 400
    assert "cannot be changed" in response.json()["detail"]


def test_it_refuses_unknown_fields_on_patch(owner_api, owner_app):
    response = owner_api.patch(URL, {"force_http": True}, format="json")
    assert response.status_code == 400


def test_it_deletes_with_204(owner_api, owner_app):
    response = owner_api.delete(URL)
    assert response.status_code == 204
    assert not WebApp.objects.exists()


def test_it_answers_404_for_an_unknown_app(owner_api, owner_app):
    response = owner_api.get("/api/v0/user/IronHand/webapps/nothing.example.com/")
    assert response.status_code == 404
    assert response.json()["detail"]


@pytest.mark.parametrize("method", ["get", "patch", "put", "delete"])
def test_it_gives_the_outsider_a_404_and_changes_nothing(outsider_api, owner_app, method):
    response = getattr(outsider_api, method)(URL, {"enabled": False}, format="json")
    assert response.status_code == 404
    owner_app.refresh_from_db()
    assert owner_app.enabled is True
    assert AuditEvent.objects.filter(outcome="denied", actor_username="mallory").count() == 1
