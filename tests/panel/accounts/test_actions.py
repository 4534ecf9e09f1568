"""The token actions: one transaction, one audit row, precise refusals."""

import pytest

from panel.accounts import actions
from panel.accounts.models import ApiToken, AuditEvent, hash_token
from tests.conftest import CLI

pytestmark = pytest.mark.django_db


def audit_actions(outcome="ok"):
    return list(AuditEvent.objects.filter(outcome=outcome).values_list("action", "target"))


def test_it_stores_only_a_hash_of_a_new_token(owner):
    token, key = actions.do_create_token(owner, actor=owner, origin=CLI, name="ci")
    assert key.startswith("hpk_") and len(key) > 40
    stored = ApiToken.objects.get()
    assert stored.key_hash == hash_token(key)
    assert key not in str(list(ApiToken.objects.values()))
    assert token.prefix == key[:12]


def test_it_refuses_an_expiry_out_of_range(owner):
    with pytest.raises(actions.ActionError, match="between 1 and"):
        actions.do_create_token(owner, actor=owner, origin=CLI, expires_in_days=0)


def test_it_revokes_a_token_and_audits_it(owner):
    token, _ = actions.do_create_token(owner, actor=owner, origin=CLI)
    actions.do_revoke_token(token, actor=owner, origin=CLI)
    token.refresh_from_db()
    assert token.revoked_at is not None and token.state == "revoked"
    assert ("token.revoke", token.prefix) in audit_actions()
