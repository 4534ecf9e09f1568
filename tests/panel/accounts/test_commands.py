"""manage.py create_token and createuser."""

import io

import pytest
from django.core.management import CommandError, call_command

from panel.accounts.models import ApiToken, AuditEvent, User, hash_token

pytestmark = pytest.mark.django_db


def run(*args) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue().strip()


def test_it_prints_a_token_that_authenticates(owner, client):
    key = run("create_token", "ironhand", "--expires-days", "7")
    assert ApiToken.objects.get().key_hash == hash_token(key)
    response = client.get("/api/v0/user/IronHand/webapps/", HTTP_AUTHORIZATION=f"Token {key}")
    assert response.status_code == 200
    assert AuditEvent.objects.get().via == "cli"


def test_it_refuses_a_token_for_an_unknown_user(db):
    with pytest.raises(CommandError, match="no user named 'nobody'"):
        run("create_token", "nobody")


def test_it_refuses_an_expiry_out_of_range(owner):
    with pytest.raises(CommandError, match="between 1 and"):
        run("create_token", "IronHand", "--expires-days", "0")


def test_it_creates_a_user_with_a_password_from_stdin(db, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("a long enough passphrase\n"))
    assert run("createuser", "Zoë", "--email", "zoe@example.com") == "created Zoë"
    assert User.objects.get(username="Zoë").check_password("a long enough passphrase")


def test_it_refuses_a_username_that_differs_only_in_case(owner, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("a long enough passphrase\n"))
    with pytest.raises(CommandError, match="already exists"):
        run("createuser", "IRONHAND")


def test_it_refuses_a_weak_password(db, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("12345\n"))
    with pytest.raises(CommandError, match="too short"):
        run("createuser", "zoe")
