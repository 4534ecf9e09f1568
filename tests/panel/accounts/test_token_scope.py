"""Tokens expire after 90 days unless told otherwise; a reload-only token may only reload."""

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from panel.accounts.models import ApiToken
from tests.conftest import token_for

pytestmark = pytest.mark.django_db

RELOAD = "/api/v0/user/IronHand/webapps/ironhand.example.com/reload/"


def client_with(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def test_it_expires_a_token_after_90_days_by_default(owner):
    token_for(owner)
    token = ApiToken.objects.get()
    assert token.expires_at - token.created_at == timedelta(days=90)
    assert token.scope == "full"


def test_it_keeps_an_expiry_it_was_told(owner):
    token_for(owner, expires_in_days=7)
    token = ApiToken.objects.get()
    assert token.expires_at - token.created_at == timedelta(days=7)
    assert token.expires_at > timezone.now()


def test_it_lets_a_reload_only_token_reload(settings, owner, owner_app):
    settings.WEBAPPS_RELOADER = "tests.webapps.support.OkReloader"
    response = client_with(token_for(owner, scope="reload")).post(RELOAD)
    assert response.status_code == 200
    assert response.json()["status"] == "OK"


def test_it_refuses_a_reload_only_token_anything_else_with_403(owner, owner_app):
    client = client_with(token_for(owner, scope="reload"))
    for method, url in (
        ("get", "/api/v0/user/IronHand/webapps/"),
        ("get", "/api/v0/user/IronHand/webapps/ironhand.example.com/"),
        ("delete", "/api/v0/user/IronHand/webapps/ironhand.example.com/"),
    ):
        response = getattr(client, method)(url)
        assert response.status_code == 403, (method, url)
        assert response.json()["detail"] == "This token may only reload web apps."
    owner_app.refresh_from_db()  # still there


def test_it_refuses_a_staff_users_reload_only_token_on_the_staff_api(staff):
    client = client_with(token_for(staff, scope="reload"))
    assert client.get("/api/v0/backends/").status_code == 403
    assert client_with(token_for(staff)).get("/api/v0/backends/").status_code == 200
