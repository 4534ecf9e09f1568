"""The admin: staff see apps, reloads, tokens and the audit trail, read-only, never a key."""

import pytest

from tests.webapps.conftest import CLI
from webapps import actions
from webapps.models import ApiToken

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_web(client, staff):
    staff.is_superuser = True
    staff.save()
    client.force_login(staff)
    return client


def test_it_lists_everyones_apps_for_staff(admin_web, owner_app):
    html = admin_web.get("/admin/webapps/webapp/").content.decode()
    assert "ironhand.example.com" in html


def test_it_never_shows_a_token_hash(admin_web, owner):
    token, _ = actions.do_create_token(owner, origin=CLI)
    html = admin_web.get(f"/admin/webapps/apitoken/{token.pk}/change/").content.decode()
    assert token.prefix in html
    assert ApiToken.objects.get().key_hash not in html


def test_it_keeps_the_audit_trail_read_only(admin_web, owner_app):
    assert admin_web.get("/admin/webapps/auditevent/add/").status_code == 403


def test_it_sends_the_outsider_to_the_admin_sign_in(outsider_web, owner_app):
    response = outsider_web.get("/admin/webapps/webapp/")
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]
