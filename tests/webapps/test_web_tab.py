"""The Web tab: /user/<username>/webapps/ and its forms."""

import re

import pytest
from django.test import Client

from panel.accounts.models import AuditEvent
from routing import ALGORITHM, Backend, RouteTable
from routing.publish import publish_table
from routing.signing import public_key_text
from tests.conftest import CLI
from tests.routing.support import PUBLISHER
from webapps import actions
from webapps.models import ReloadEvent, WebApp
from webapps.redis_client import get_redis

pytestmark = pytest.mark.django_db

LIST = "/user/IronHand/webapps/"
RELOAD = "/user/IronHand/webapps/ironhand.example.com/reload/"


def publish(settings, *names):
    table = RouteTable(
        version=7,
        algorithm=ALGORITHM,
        backends=tuple(Backend(name, f"127.0.0.1:{9100 + i}") for i, name in enumerate(names)),
    )
    # Signed with the key the panel trusts (tests/conftest.py, hosting_settings).
    assert public_key_text(PUBLISHER.public_key()) == settings.ROUTES_TRUSTED_KEYS
    publish_table(get_redis(), table, settings.REDIS_PREFIX, signing_key=PUBLISHER)
    return table


def csrf_client(user) -> tuple[Client, str]:
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    client.get(LIST)
    return client, client.cookies["csrftoken"].value


def test_it_sends_a_visitor_to_sign_in(client):
    response = client.get(LIST)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_it_sends_the_signed_in_user_home_to_their_web_tab(owner_web):
    response = owner_web.get("/")
    assert response["Location"] == LIST


def test_it_lists_apps_in_unicode_with_reload_forms(owner_web, owner_app, unicode_app):
    html = owner_web.get(LIST).content.decode()
    assert "bücher.example" in html
    assert 'action="/user/IronHand/webapps/xn--bcher-kva.example/reload/"' in html
    assert 'action="/user/IronHand/webapps/ironhand.example.com/reload/"' in html


def test_it_shows_the_backend_that_serves_each_app_now(settings, owner_web, owner_app):
    table = publish(settings, "b1", "b2", "b3")
    expected = table.backend_for("ironhand.example.com").name
    html = owner_web.get(LIST).content.decode()
    assert re.search(rf"Served by</dt><dd>{expected}</dd>", html)


def test_it_says_when_no_route_table_is_published(owner_web, owner_app):
    assert "no backend in the route table" in owner_web.get(LIST).content.decode()


def test_it_shows_each_apps_curl_snippet_on_the_web_tab(owner_web, unicode_app):
    html = owner_web.get(LIST).content.decode()
    assert "http://testserver/api/v0/user/IronHand/webapps/xn--bcher-kva.example/reload/" in html


def test_it_shows_the_curl_snippet_with_the_canonical_api_url(owner_web, unicode_app):
    html = owner_web.get("/user/IronHand/webapps/B%C3%BCcher.example/").content.decode()
    assert "Authorization: Token $PANEL_TOKEN" in html
    assert "http://testserver/api/v0/user/IronHand/webapps/xn--bcher-kva.example/reload/" in html


def test_it_creates_an_app_from_the_form(owner_web):
    response = owner_web.post(LIST, {"domain_name": "IronHand.example.com"})
    assert response.status_code == 302
    assert WebApp.objects.get().domain == "ironhand.example.com"


def test_it_shows_why_a_domain_is_refused(owner_web, owner_app):
    response = owner_web.post(LIST, {"domain_name": "IRONHAND.example.com"})
    assert response.status_code == 400
    assert "already used by a web app" in response.content.decode()


def test_it_reloads_without_javascript_and_says_how_it_went(settings, owner_web, owner_app):
    settings.WEBAPPS_RELOADER = "tests.webapps.support.OkReloader"
    response = owner_web.post(RELOAD, follow=True)
    assert "Reloaded on b7 in 12 ms" in response.content.decode()
    assert ReloadEvent.objects.get().via == "ui"


def test_it_goes_back_to_the_page_the_reload_came_from(owner_web, owner_app):
    detail = "/user/IronHand/webapps/ironhand.example.com/"
    assert owner_web.post(RELOAD, {"next": detail})["Location"] == detail


@pytest.mark.parametrize("elsewhere", ["https://evil.example/", "//evil.example/", "javascript:x"])
def test_it_never_goes_back_to_another_site(owner_web, owner_app, elsewhere):
    assert owner_web.post(RELOAD, {"next": elsewhere})["Location"] == LIST


def test_it_reloads_in_place_with_json(settings, owner_web, owner_app):
    settings.WEBAPPS_RELOADER = "tests.webapps.support.OkReloader"
    response = owner_web.post(RELOAD, HTTP_ACCEPT="application/json")
    assert response.json()["summary"] == "Reloaded on b7 in 12 ms"


def test_it_shows_the_log_tail_of_a_failed_reload(settings, owner_web, owner_app):
    settings.WEBAPPS_RELOADER = "tests.webapps.support.BrokenAppReloader"
    body = owner_web.post(RELOAD, HTTP_ACCEPT="application/json").json()
    assert (body["ok"], body["summary"]) == (
        False,
        "Reload failed on b7: SyntaxError: <boom> (the app failed to start)",
    )
    html = owner_web.get(LIST).content.decode()
    assert "SyntaxError: &lt;boom&gt;" in html


def test_it_keeps_each_failed_reloads_log_tail_in_the_history(settings, owner_web, owner_app):
    settings.WEBAPPS_RELOADER = "tests.webapps.support.BrokenAppReloader"
    owner_web.post(RELOAD)
    settings.WEBAPPS_RELOADER = "tests.webapps.support.OkReloader"
    owner_web.post(RELOAD)
    html = owner_web.get("/user/IronHand/webapps/ironhand.example.com/").content.decode()
    history = html.split("Recent reloads")[1]
    assert "Reloaded on b7 in 12 ms" in history
    assert "SyntaxError: &lt;boom&gt;" in history


def test_it_answers_429_with_retry_after_when_throttled(settings, owner_web, owner_app):
    settings.RELOAD_THROTTLE_PER_MINUTE = 1
    owner_web.post(RELOAD)
    response = owner_web.post(RELOAD, HTTP_X_FORWARDED_FOR="192.0.2.1")
    assert response.status_code == 429
    assert int(response["Retry-After"]) >= 1


def test_it_refuses_get_on_the_reload_url_with_405(owner_web, owner_app):
    assert owner_web.get(RELOAD).status_code == 405


def test_it_refuses_a_reload_without_the_csrf_token(owner, owner_app):
    client, _ = csrf_client(owner)
    assert client.post(RELOAD).status_code == 403
    assert not ReloadEvent.objects.exists()


def test_it_refuses_a_reload_from_a_foreign_origin(owner, owner_app):
    client, token = csrf_client(owner)
    response = client.post(
        RELOAD, {"csrfmiddlewaretoken": token}, HTTP_ORIGIN="https://evil.example"
    )
    assert response.status_code == 403
    assert not ReloadEvent.objects.exists()


def test_it_accepts_a_reload_with_the_token_and_its_own_origin(owner, owner_app):
    client, token = csrf_client(owner)
    response = client.post(RELOAD, {"csrfmiddlewaretoken": token}, HTTP_ORIGIN="http://testserver")
    assert response.status_code == 302
    assert ReloadEvent.objects.count() == 1


def test_it_saves_settings_from_the_detail_page(owner_web, owner_app):
    response = owner_web.post(
        "/user/IronHand/webapps/ironhand.example.com/",
        {"source_directory": "site", "wsgi_entry": "site.wsgi:app", "enabled": "on"},
    )
    assert response.status_code == 302
    owner_app.refresh_from_db()
    assert owner_app.source_directory.endswith("/ironhand/site")


def test_it_deletes_from_the_detail_page(owner_web, owner_app):
    owner_web.post("/user/IronHand/webapps/ironhand.example.com/delete/")
    assert not WebApp.objects.exists()


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", LIST),
        ("post", LIST),
        ("get", "/user/IronHand/webapps/ironhand.example.com/"),
        ("post", "/user/IronHand/webapps/IronHand.Example.com./"),
        ("post", RELOAD),
        ("post", "/user/ironhand/webapps/IRONHAND.example.com/reload/"),
        ("post", "/user/mallory/webapps/ironhand.example.com/reload/"),
        ("post", "/user/mallory/webapps/%69ronhand.example.com./reload/"),
        ("post", "/user/IronHand/webapps/ironhand.example.com/delete/"),
        ("get", "/user/IronHand/account/"),
    ],
)
def test_it_gives_the_outsider_a_404_and_audits_it(settings, outsider_web, owner_app, method, path):
    settings.WEBAPPS_RELOADER = "tests.webapps.support.OkReloader"
    response = getattr(outsider_web, method)(path, {"domain_name": "x.example.com"})
    assert response.status_code == 404
    assert WebApp.objects.get() == owner_app
    assert not ReloadEvent.objects.exists()
    assert AuditEvent.objects.filter(outcome="denied", actor_username="mallory").count() == 1


def test_it_gives_the_outsider_a_404_for_a_unicode_spelling(outsider_web, unicode_app):
    response = outsider_web.post("/user/mallory/webapps/B%C3%9Ccher.example/reload/")
    assert response.status_code == 404
    denied = AuditEvent.objects.get(outcome="denied")
    assert denied.target == "xn--bcher-kva.example"


def test_it_does_not_reveal_the_owners_apps_on_the_outsiders_own_tab(
    outsider, outsider_web, owner_app
):
    actions.do_create_webapp("mallory.org", actor=outsider, origin=CLI)
    html = outsider_web.get("/user/mallory/webapps/").content.decode()
    assert "mallory.org" in html
    assert "ironhand" not in html.lower()


def test_it_serves_its_script_and_stylesheet_without_collectstatic(client):
    for name in ("panel.js", "panel.css"):
        response = client.get(f"/static/webapps/{name}")
        assert response.status_code == 200
        response.close()


# --- enable / disable, password protection, HTTPS, Python version -------------------------------

DETAIL = "/user/IronHand/webapps/ironhand.example.com/"


def test_it_disables_and_enables_from_the_detail_page(owner_web, owner_app):
    response = owner_web.post(DETAIL + "disable/", {"next": DETAIL})
    assert (response.status_code, response["Location"]) == (302, DETAIL)
    owner_app.refresh_from_db()
    assert owner_app.enabled is False
    page = owner_web.get(DETAIL).content.decode()
    assert "Disabled: visitors get a page saying so" in page
    assert "Enable this web app" in page
    owner_web.post(DETAIL + "enable/")
    owner_app.refresh_from_db()
    assert owner_app.enabled is True


def test_it_sets_password_protection_from_the_detail_page(owner_web, owner_app):
    response = owner_web.post(
        DETAIL + "protection/",
        {
            "password_protection_enabled": "on",
            "password_protection_username": "staging",
            "password_protection_password": "open sesame",
        },
    )
    assert response.status_code == 302
    owner_app.refresh_from_db()
    assert owner_app.password_protection_enabled is True
    stored = owner_app.password_protection_hash
    assert stored.startswith("pbkdf2_sha256$")
    # An empty password keeps the stored one.
    owner_web.post(
        DETAIL + "protection/",
        {"password_protection_enabled": "on", "password_protection_username": "staging2"},
    )
    owner_app.refresh_from_db()
    assert (owner_app.password_protection_username, owner_app.password_protection_hash) == (
        "staging2",
        stored,
    )
    page = owner_web.get(DETAIL).content.decode()
    assert "on, for staging2" in page and "open sesame" not in page and stored not in page


def test_password_protection_without_a_password_is_refused_on_the_page(owner_web, owner_app):
    response = owner_web.post(
        DETAIL + "protection/",
        {"password_protection_enabled": "on", "password_protection_username": "staging"},
    )
    assert response.status_code == 400
    assert "password protection needs a password" in response.content.decode()


def test_it_offers_only_the_nodes_pythons(owner_web, owner_app):
    page = owner_web.get(DETAIL).content.decode()
    assert '<option value="3.11">Python 3.11</option>' in page
    assert 'value="3.9"' not in page
    response = owner_web.post(
        DETAIL,
        {
            "source_directory": owner_app.source_directory,
            "wsgi_entry": "wsgi:application",
            "python_version": "3.12",
            "enabled": "on",
        },
    )
    assert response.status_code == 302
    owner_app.refresh_from_db()
    assert owner_app.python_version == "3.12"


@pytest.mark.parametrize("path", ["enable/", "disable/", "protection/"])
def test_the_outsider_gets_a_404_on_the_new_forms(outsider_web, owner_app, path):
    response = outsider_web.post(DETAIL + path, {"password_protection_enabled": "on"})
    assert response.status_code == 404
    owner_app.refresh_from_db()
    assert (owner_app.enabled, owner_app.password_protection_enabled) == (True, False)


def test_it_shows_and_changes_the_app_server_settings(owner_web, owner_app, settings):
    settings.NODE_MAX_WORKERS_PER_APP = 4
    page = owner_web.get(DETAIL).content.decode()
    assert "Now: 2 workers (sync), timeout 60 s." in " ".join(page.split())
    assert 'name="workers"' in page and 'max="4"' in page
    response = owner_web.post(
        DETAIL + "server/", {"workers": "3", "threads": "4", "worker_timeout": ""}
    )
    assert response.status_code == 302
    owner_app.refresh_from_db()
    assert (owner_app.workers, owner_app.threads, owner_app.worker_timeout) == (3, 4, None)
    page = owner_web.get(DETAIL).content.decode()
    assert "reload it to apply them" in page
    assert "Now: 3 workers of 4 threads each (gthread), timeout 60 s." in " ".join(page.split())


def test_app_server_settings_past_the_limit_are_refused_on_the_page(owner_web, owner_app, settings):
    settings.NODE_MAX_THREADS_PER_APP = 8
    response = owner_web.post(DETAIL + "server/", {"workers": "", "threads": "9"})
    assert response.status_code == 400
    assert "at most 8 (NODE_MAX_THREADS_PER_APP)" in response.content.decode()
    owner_app.refresh_from_db()
    assert owner_app.threads is None
