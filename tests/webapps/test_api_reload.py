"""POST /api/v0/user/<username>/webapps/<domain>/reload/"""

import pytest

from panel.accounts.models import AuditEvent
from tests.conftest import CLI
from webapps.actions import do_create_webapp
from webapps.models import ReloadEvent

pytestmark = pytest.mark.django_db

URL = "/api/v0/user/IronHand/webapps/ironhand.example.com/reload/"


def test_it_reloads_and_answers_like_the_hosting_api(settings, owner_api, owner_app):
    settings.WEBAPPS_RELOADER = "tests.webapps.support.OkReloader"
    response = owner_api.post(URL)
    assert response.status_code == 200
    assert response.json() == {
        "status": "OK",
        "result": "reloaded",
        "backend": "b7",
        "duration_ms": 12,
        "workers": None,
        "generation": None,
        "misrouted": False,
        "summary": "Reloaded on b7 in 12 ms",
    }
    event = ReloadEvent.objects.get()
    assert (event.via, event.user, event.backend) == ("api", owner_app.owner, "b7")


def test_it_records_the_request_id_and_client(settings, owner_api, owner_app):
    settings.WEBAPPS_RELOADER = "tests.webapps.support.OkReloader"
    owner_api.post(URL, HTTP_X_REQUEST_ID="req-42", HTTP_X_FORWARDED_FOR="203.0.113.9, 10.0.0.1")
    event = ReloadEvent.objects.get()
    assert (event.request_id, event.client_ip) == ("req-42", "10.0.0.1")


def test_it_reports_a_failed_reload_with_the_log_tail(settings, owner_api, owner_app):
    settings.WEBAPPS_RELOADER = "tests.webapps.support.BrokenAppReloader"
    response = owner_api.post(URL)
    assert response.status_code == 502
    body = response.json()
    assert body["status"] == "ERROR"
    assert body["detail"] == "the app failed to start"
    assert "SyntaxError" in body["log_tail"]


def test_it_says_when_no_node_serves_the_app_and_still_records_it(owner_api, owner_app):
    response = owner_api.post(URL)
    assert response.status_code == 502
    assert response.json()["detail"] == "no node serves ironhand.example.com here"
    assert ReloadEvent.objects.filter(outcome="failed").count() == 1


def test_it_shows_the_last_reload_on_the_app(settings, owner_api, owner_app):
    settings.WEBAPPS_RELOADER = "tests.webapps.support.OkReloader"
    owner_api.post(URL)
    app = owner_api.get("/api/v0/user/IronHand/webapps/ironhand.example.com/").json()
    assert app["last_reload"]["summary"] == "Reloaded on b7 in 12 ms"


def test_it_refuses_get_with_405(owner_api, owner_app):
    assert owner_api.get(URL).status_code == 405


def test_it_throttles_with_429_and_retry_after_whatever_the_forwarded_for(
    settings, owner_api, owner_app
):
    settings.RELOAD_THROTTLE_PER_MINUTE = 3
    codes = [
        owner_api.post(URL, HTTP_X_FORWARDED_FOR=f"198.51.100.{n}").status_code for n in range(4)
    ]
    assert codes[:3] == [502, 502, 502]
    assert codes[3] == 429
    response = owner_api.post(URL, HTTP_X_FORWARDED_FOR="192.0.2.77")
    assert response.status_code == 429
    assert 1 <= int(response["Retry-After"]) <= 60
    assert ReloadEvent.objects.count() == 3


def test_it_throttles_each_user_separately(settings, owner_api, owner_app, outsider, outsider_api):
    settings.RELOAD_THROTTLE_PER_MINUTE = 1
    do_create_webapp("mallory.example.com", actor=outsider, origin=CLI)
    assert owner_api.post(URL).status_code == 502
    assert owner_api.post(URL).status_code == 429
    mine = outsider_api.post("/api/v0/user/mallory/webapps/mallory.example.com/reload/")
    assert mine.status_code == 502  # reloaded (no node here), not throttled


@pytest.mark.parametrize(
    "path",
    [
        URL,
        "/api/v0/user/IronHand/webapps/IRONHAND.EXAMPLE.COM/reload/",
        "/api/v0/user/ironhand/webapps/ironhand.example.com./reload/",
        "/api/v0/user/IronHand/webapps/%69ronhand.example.com/reload/",
        "/api/v0/user/mallory/webapps/ironhand.example.com/reload/",
    ],
)
def test_it_gives_the_outsider_a_404_whatever_the_spelling(settings, outsider_api, owner_app, path):
    settings.WEBAPPS_RELOADER = "tests.webapps.support.OkReloader"
    response = outsider_api.post(path)
    assert response.status_code == 404
    assert not ReloadEvent.objects.exists()
    denied = AuditEvent.objects.get(outcome="denied")
    assert (denied.actor_username, denied.action) == ("mallory", "webapp.reload")


def signed_in_with_csrf(user):
    """A browser session of ``user`` that enforces CSRF, and its token from the Web tab."""
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    client.get("/user/IronHand/webapps/")
    return client, client.cookies["csrftoken"].value


def test_it_accepts_a_signed_in_session_with_csrf(settings, owner, owner_app):
    settings.WEBAPPS_RELOADER = "tests.webapps.support.OkReloader"
    client, token = signed_in_with_csrf(owner)
    assert client.post(URL).status_code == 403
    assert client.post(URL, HTTP_X_CSRFTOKEN=token).status_code == 200


def test_it_refuses_a_session_call_from_a_foreign_origin(settings, owner, owner_app):
    settings.WEBAPPS_RELOADER = "tests.webapps.support.OkReloader"
    client, token = signed_in_with_csrf(owner)
    response = client.post(URL, HTTP_X_CSRFTOKEN=token, HTTP_ORIGIN="https://evil.example")
    assert response.status_code == 403
    assert not ReloadEvent.objects.exists()
