"""One meaning for a request body: form and JSON alike, partial updates, every field of
PythonAnywhere's web app object, and the bad input fuzzing found."""

import json
import subprocess
import sys

import pytest
from django.contrib.auth.hashers import PBKDF2PasswordHasher

from panel.accounts.models import AuditEvent
from tests.support import child_env, repo_root
from webapps.models import WebApp

pytestmark = pytest.mark.django_db

LIST = "/api/v0/user/IronHand/webapps/"
URL = "/api/v0/user/IronHand/webapps/ironhand.example.com/"
PA_FIELDS = {
    "id",
    "user",
    "domain_name",
    "python_version",
    "source_directory",
    "working_directory",
    "virtualenv_path",
    "expiry",
    "force_https",
    "password_protection_enabled",
    "password_protection_username",
}


def _send(client, method, url, body, encoding):
    if encoding == "json":
        return getattr(client, method)(url, body, format="json")
    return getattr(client, method)(url, body)  # multipart, as a form would


def _comparable(body: dict) -> dict:
    return {k: v for k, v in body.items() if k not in {"id", "created_at", "updated_at"}}


def test_it_returns_every_field_of_pythonanywheres_object(owner_api, owner_app):
    body = owner_api.get(URL).json()
    assert set(body) >= PA_FIELDS
    assert "password_protection_password" not in body
    assert (body["expiry"], body["force_https"], body["password_protection_enabled"]) == (
        None,
        False,
        False,
    )


@pytest.mark.parametrize("encoding", ["json", "form"])
def test_a_patch_leaving_enabled_out_keeps_the_app_enabled(owner_api, owner_app, encoding):
    response = _send(owner_api, "patch", URL, {"wsgi_entry": "site.wsgi:app"}, encoding)
    assert response.status_code == 200
    owner_app.refresh_from_db()
    assert (owner_app.enabled, owner_app.wsgi_entry) == (True, "site.wsgi:app")


@pytest.mark.parametrize("encoding", ["json", "form"])
def test_a_patch_leaving_booleans_out_keeps_their_stored_values(owner_api, owner_app, encoding):
    WebApp.objects.filter(pk=owner_app.pk).update(force_https=True, enabled=False)
    response = _send(owner_api, "patch", URL, {"python_version": "3.12"}, encoding)
    assert response.status_code == 200
    assert (response.json()["force_https"], response.json()["enabled"]) == (True, False)


def test_a_form_create_and_a_json_create_give_the_same_app(owner_api):
    body = {"python_version": "python311", "source_directory": "site"}
    by_json = owner_api.post(LIST, {"domain_name": "one.example.com", **body}, format="json")
    by_form = owner_api.post(LIST, {"domain_name": "two.example.com", **body})
    assert (by_json.status_code, by_form.status_code) == (201, 201)
    one, two = _comparable(by_json.json()), _comparable(by_form.json())
    for app in (one, two):
        for key in ("domain_name", "domain_display", "reload_url", "api_reload_url"):
            app.pop(key)
    assert one == two
    assert one["enabled"] is True and one["force_https"] is False


def test_the_official_clients_create_then_patch_leaves_the_app_enabled(owner_api, owner):
    """pythonanywhere-core's Webapp.create(): a form POST, then a form PATCH of two fields."""
    created = owner_api.post(
        LIST, {"domain_name": "www.ironhand.org", "python_version": "python311"}
    )
    assert created.status_code == 201
    response = owner_api.patch(
        "/api/v0/user/IronHand/webapps/www.ironhand.org/", {"source_directory": "www.ironhand.org"}
    )
    assert response.status_code == 200
    assert response.json()["enabled"] is True


@pytest.mark.parametrize("encoding", ["json", "form"])
def test_it_stores_force_https(owner_api, owner_app, encoding):
    value = True if encoding == "json" else "true"
    response = _send(owner_api, "patch", URL, {"force_https": value}, encoding)
    assert response.status_code == 200
    owner_app.refresh_from_db()
    assert owner_app.force_https is True


def test_it_stores_the_protection_password_hashed_and_never_returns_it(owner_api, owner_app):
    response = owner_api.patch(
        URL,
        {
            "password_protection_enabled": True,
            "password_protection_username": "staging",
            "password_protection_password": "open sesame",
        },
        format="json",
    )
    assert response.status_code == 200
    assert "open sesame" not in response.content.decode()
    assert "password_protection_password" not in response.json()
    owner_app.refresh_from_db()
    assert owner_app.password_protection_hash.startswith("pbkdf2_sha256$")
    assert PBKDF2PasswordHasher().verify("open sesame", owner_app.password_protection_hash)
    event = AuditEvent.objects.filter(action="webapp.update").latest("id")
    assert "open sesame" not in json.dumps(event.detail)
    assert owner_app.password_protection_hash not in json.dumps(event.detail)
    assert event.detail["changed"]["password_protection_password"] == ["", "set"]


def test_password_protection_needs_a_user_name_and_a_password(owner_api, owner_app):
    response = owner_api.patch(URL, {"password_protection_enabled": True}, format="json")
    assert response.status_code == 400
    assert "needs a user name" in response.json()["password_protection_username"][0]
    response = owner_api.patch(
        URL,
        {"password_protection_enabled": "true", "password_protection_username": "staging"},
    )
    assert response.status_code == 400
    assert "needs a password" in response.json()["password_protection_password"][0]


def test_a_protection_user_name_with_a_colon_is_refused(owner_api, owner_app):
    response = owner_api.patch(URL, {"password_protection_username": "a:b"}, format="json")
    assert response.status_code == 400
    assert "':'" in response.json()["password_protection_username"][0]


@pytest.mark.parametrize("field", ["id", "user", "working_directory", "expiry", "backend"])
def test_a_read_only_field_is_refused_as_such(owner_api, owner_app, field):
    response = owner_api.patch(URL, {field: "x"}, format="json")
    assert response.status_code == 400
    assert response.json()[field] == ["Read-only field: it cannot be set."]


def test_an_unknown_field_is_still_refused_by_name(owner_api, owner_app):
    response = owner_api.patch(URL, {"force_http": True}, format="json")
    assert response.status_code == 400
    assert response.json()["force_http"] == ["Unknown field."]


# --- python_version --------------------------------------------------------------------------


def test_it_refuses_a_python_version_the_nodes_do_not_have_listing_those_they_have(
    owner_api, owner_app
):
    response = owner_api.patch(URL, {"python_version": "3.9"}, format="json")
    assert response.status_code == 400
    assert response.json()["python_version"] == [
        "Python 3.9 is not available here; one of 3.10, 3.11, 3.12"
    ]


@pytest.mark.parametrize(
    "typed", ["\u0663.\u0661\u0661", "3.\u0661\u0661", "python\u0663\u0661\u0661"]
)
def test_it_refuses_a_python_version_in_non_ascii_digits(owner_api, owner_app, typed):
    response = owner_api.patch(URL, {"python_version": typed}, format="json")
    assert response.status_code == 400
    assert "is not a Python version" in response.json()["python_version"][0]
    owner_app.refresh_from_db()
    assert owner_app.python_version == ""


def test_the_default_python_versions_are_the_nodes_own():
    import sys

    import panel.settings

    own = f"{sys.version_info[0]}.{sys.version_info[1]}"

    assert [own] == panel.settings.PYTHON_VERSIONS


def _settings_in_child(**env: str) -> subprocess.CompletedProcess:
    code = "import panel.settings as s; print(','.join(s.PYTHON_VERSIONS))"
    child = child_env(DJANGO_SETTINGS_MODULE="panel.settings", **env)
    child.pop("PYTHON_VERSIONS", None)
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=repo_root(), env=child, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_the_python_versions_offered_default_to_those_the_nodes_are_given():
    done = _settings_in_child(
        NODE_PYTHONS="3.12=/opt/py/bin/python3.12, 3.13=/opt/py/bin/python3.13"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "3.12,3.13"


def test_a_malformed_node_pythons_setting_stops_the_panel_naming_the_entry():
    done = _settings_in_child(NODE_PYTHONS="3.12:/usr/bin/python3.12")
    assert done.returncode != 0
    assert "NODE_PYTHONS: '3.12:/usr/bin/python3.12' is not <version>=<interpreter>" in done.stderr


# --- a PATCH that changes nothing ------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["json", "form"])
def test_a_patch_that_changes_nothing_writes_nothing(owner_api, owner_app, encoding):
    before = WebApp.objects.get().updated_at
    audit_rows = AuditEvent.objects.count()
    body = {
        "wsgi_entry": owner_app.wsgi_entry,
        "source_directory": owner_app.source_directory,
        "enabled": "true" if encoding == "form" else True,
    }
    response = _send(owner_api, "patch", URL, body, encoding)
    assert response.status_code == 200
    assert WebApp.objects.get().updated_at == before
    assert AuditEvent.objects.count() == audit_rows


def test_resending_the_same_protection_password_changes_nothing(owner_api, owner_app):
    body = {"password_protection_username": "staging", "password_protection_password": "pw"}
    assert owner_api.patch(URL, body, format="json").status_code == 200
    stored = WebApp.objects.get()
    audit_rows = AuditEvent.objects.count()
    assert owner_api.patch(URL, body, format="json").status_code == 200
    again = WebApp.objects.get()
    assert (again.password_protection_hash, again.updated_at) == (
        stored.password_protection_hash,
        stored.updated_at,
    )
    assert AuditEvent.objects.count() == audit_rows


def test_an_empty_patch_writes_nothing(owner_api, owner_app):
    before = WebApp.objects.get().updated_at
    assert owner_api.patch(URL, {}, format="json").status_code == 200
    assert WebApp.objects.get().updated_at == before
    assert not AuditEvent.objects.filter(action="webapp.update").exists()


# --- bodies the parsers refuse ---------------------------------------------------------------


@pytest.mark.parametrize("opener", ["[", '{"a":'])
def test_a_json_body_nested_1000_levels_deep_is_a_json_400(owner_api, owner_app, opener):
    body = opener * 1000
    response = owner_api.patch(URL, body, content_type="application/json")
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert "nested more than 32 levels deep" in response.json()["detail"]


def test_a_json_body_nested_deeper_than_the_limit_but_parseable_is_a_400(owner_api, owner_app):
    body = "[" * 40 + "]" * 40
    response = owner_api.post(LIST, body, content_type="application/json")
    assert response.status_code == 400
    assert "nested more than 32 levels deep" in response.json()["detail"]


def test_more_than_1000_form_fields_are_a_json_400(owner_api, owner_app):
    body = "&".join(f"f{n}=x" for n in range(1001))
    response = owner_api.patch(URL, body, content_type="application/x-www-form-urlencoded")
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert response.json()["detail"] == "too many form fields: at most 1000 are read"


def test_more_than_1000_multipart_fields_are_a_json_400(owner_api, owner_app):
    response = owner_api.post(LIST, {f"f{n}": "x" for n in range(1001)})
    assert response.status_code == 400
    assert response.json()["detail"] == "too many form fields: at most 1000 are read"


def test_a_relative_path_too_long_once_resolved_is_refused(owner_api, owner_app):
    response = owner_api.patch(URL, {"virtualenv_path": "0" * 4096}, format="json")
    assert response.status_code == 400
    assert "longer than 4096 characters once resolved" in response.json()["virtualenv_path"][0]
    owner_app.refresh_from_db()
    assert owner_app.virtualenv_path == ""


def test_a_path_under_the_api_that_matches_no_route_is_a_json_404(owner_api, owner_app):
    response = owner_api.get(URL + "static_files/null,null/")
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json()["detail"].startswith("No API endpoint at /api/v0/")


def test_other_unmatched_paths_keep_the_html_404(owner_web):
    response = owner_web.get("/no/such/page/")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")
