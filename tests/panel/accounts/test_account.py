"""The account page: create (shown once), list and revoke API tokens."""

import re

import pytest

from panel.accounts.models import ApiToken, AuditEvent

pytestmark = pytest.mark.django_db

URL = "/user/IronHand/account/"


def test_it_shows_a_new_token_once(owner_web):
    response = owner_web.post(URL, {"name": "ci", "expires_in_days": "30"})
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    key = re.search(r'id="new-key">(hpk_[\w-]+)<', response.content.decode())[1]
    token = ApiToken.objects.get()
    assert token.name == "ci" and token.expires_at is not None
    assert key not in owner_web.get(URL).content.decode()
    assert token.prefix in owner_web.get(URL).content.decode()


def test_it_lists_tokens_with_created_and_last_used(owner_web, owner_api):
    owner_api.get("/api/v0/user/IronHand/webapps/")
    html = owner_web.get(URL).content.decode()
    assert "Last used" in html
    assert "never" not in html.split("<tbody>")[1].split("</td>")[3]


def test_it_refuses_an_expiry_out_of_range(owner_web):
    response = owner_web.post(URL, {"expires_in_days": "0"})
    assert "new-key" not in response.content.decode()
    assert not ApiToken.objects.exists()


def test_it_revokes_a_token(owner_web, owner_api):
    token = ApiToken.objects.get()
    response = owner_web.post(f"{URL}tokens/{token.pk}/revoke/")
    assert response.status_code == 302
    assert owner_api.get("/api/v0/user/IronHand/webapps/").status_code == 401


def test_it_gives_the_outsider_a_404_for_someone_elses_token(outsider_web, owner_api):
    token = ApiToken.objects.get()
    for path in (
        f"{URL}tokens/{token.pk}/revoke/",
        f"/user/mallory/account/tokens/{token.pk}/revoke/",
    ):
        assert outsider_web.post(path).status_code == 404
    assert ApiToken.objects.get().revoked_at is None
    assert AuditEvent.objects.filter(outcome="denied", action="token.revoke").count() == 2


def test_it_refuses_get_on_the_revoke_url(owner_web, owner_api):
    token = ApiToken.objects.get()
    assert owner_web.get(f"{URL}tokens/{token.pk}/revoke/").status_code == 405
