"""The admin: staff see tokens and the audit trail, read-only, never a key."""

import pytest

from panel.accounts import actions
from panel.accounts.models import ApiToken
from tests.conftest import CLI

pytestmark = pytest.mark.django_db


def test_it_never_shows_a_token_hash(admin_web, owner):
    token, _ = actions.do_create_token(owner, actor=owner, origin=CLI)
    html = admin_web.get(f"/admin/accounts/apitoken/{token.pk}/change/").content.decode()
    assert token.prefix in html
    assert ApiToken.objects.get().key_hash not in html


def test_it_keeps_the_audit_trail_read_only(admin_web, owner_app):
    assert admin_web.get("/admin/accounts/auditevent/add/").status_code == 403
