"""Authorization: Token <key> — hashed, expiring, revocable, recording last use."""

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from panel.accounts import actions
from panel.accounts.models import ApiToken
from tests.conftest import CLI, token_for

pytestmark = pytest.mark.django_db

URL = "/api/v0/user/IronHand/webapps/"


def client_with(header: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)
    return client


def test_it_accepts_a_valid_token(owner):
    assert client_with(f"Token {token_for(owner)}").get(URL).status_code == 200


def test_it_records_when_a_token_was_last_used(owner):
    key = token_for(owner)
    assert ApiToken.objects.get().last_used_at is None
    client_with(f"Token {key}").get(URL)
    assert ApiToken.objects.get().last_used_at is not None


def test_it_refuses_an_expired_token_with_401(owner):
    key = token_for(owner, expires_in_days=1)
    ApiToken.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    response = client_with(f"Token {key}").get(URL)
    assert response.status_code == 401
    assert response.json() == {"detail": "This token has expired."}


def test_it_refuses_a_revoked_token_at_once(owner):
    token, key = actions.do_create_token(owner, actor=owner, origin=CLI)
    client = client_with(f"Token {key}")
    assert client.get(URL).status_code == 200
    actions.do_revoke_token(token, actor=owner, origin=CLI)
    response = client.get(URL)
    assert response.status_code == 401
    assert response.json() == {"detail": "This token has been revoked."}


def test_it_refuses_a_token_of_a_disabled_account(owner):
    key = token_for(owner)
    owner.is_active = False
    owner.save()
    assert client_with(f"Token {key}").get(URL).status_code == 401


@pytest.mark.parametrize(
    "header",
    ["Token hpk_nonsense", "Token not-even-prefixed", "Token", "Token a b", "Token hpk_\u00e9"],
)
def test_it_refuses_a_bad_token_with_401(owner, header):
    assert client_with(header).get(URL).status_code == 401


def test_it_refuses_the_stored_hash_used_as_a_key(owner):
    token_for(owner)
    stored = ApiToken.objects.get().key_hash
    assert client_with(f"Token {stored}").get(URL).status_code == 401
    assert client_with(f"Token hpk_{stored}").get(URL).status_code == 401


def test_it_gives_the_outsiders_token_a_404_not_the_owners_data(outsider, owner_app):
    response = client_with(f"Token {token_for(outsider)}").get(URL)
    assert response.status_code == 404
