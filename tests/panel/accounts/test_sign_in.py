"""Signing in and out, with brute-force protection: a lockout per username and address, and a
back-off per username across addresses."""

import time

import pytest
from django.conf import settings

from panel.accounts import backoff
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db

LOGIN = "/accounts/login/"


def test_it_signs_in_and_lands_on_the_home_page(client, owner):
    response = client.post(LOGIN, {"username": "IronHand", "password": PASSWORD})
    assert response.status_code == 302
    assert client.get("/")["Location"] == "/user/IronHand/webapps/"


def test_it_signs_in_whatever_the_case_of_the_username(client, owner):
    client.post(LOGIN, {"username": "ironhand", "password": PASSWORD})
    assert client.session["_auth_user_id"] == str(owner.pk)


def test_it_locks_out_after_repeated_failures_even_with_the_right_password(client, owner):
    for _ in range(settings.AXES_FAILURE_LIMIT):
        response = client.post(LOGIN, {"username": "IronHand", "password": "wrong"})
        assert "_auth_user_id" not in client.session
    response = client.post(LOGIN, {"username": "IronHand", "password": PASSWORD})
    assert response.status_code in (403, 429)
    assert "_auth_user_id" not in client.session


def test_it_signs_out_with_a_post(owner_web):
    response = owner_web.post("/accounts/logout/")
    assert response.status_code == 302
    assert owner_web.get("/user/IronHand/webapps/").status_code == 302


def test_it_locks_out_by_the_address_our_proxy_saw_not_the_forged_ones(client, owner):
    for n in range(settings.AXES_FAILURE_LIMIT):
        forged = f"10.9.9.{n}, 203.0.113.5"
        client.post(LOGIN, {"username": "IronHand", "password": "x"}, HTTP_X_FORWARDED_FOR=forged)
    client.post(
        LOGIN,
        {"username": "IronHand", "password": PASSWORD},
        HTTP_X_FORWARDED_FOR="1.2.3.4, 203.0.113.5",
    )
    assert "_auth_user_id" not in client.session


def test_it_does_not_lock_out_the_same_user_from_another_address(client, owner):
    for _ in range(settings.AXES_FAILURE_LIMIT):
        client.post(
            LOGIN, {"username": "IronHand", "password": "x"}, HTTP_X_FORWARDED_FOR="203.0.113.5"
        )
    client.post(
        LOGIN, {"username": "IronHand", "password": PASSWORD}, HTTP_X_FORWARDED_FOR="198.51.100.7"
    )
    assert "_auth_user_id" in client.session


def _fail_from(client, address: str, times: int) -> None:
    for _ in range(times):
        client.post(LOGIN, {"username": "IronHand", "password": "x"}, HTTP_X_FORWARDED_FOR=address)


def test_failures_from_two_addresses_never_slow_the_owner_down_from_a_third(client, owner):
    # Far more attempts than the lockout allows, from each: each address counts at most the
    # lockout's limit toward the username's back-off.
    _fail_from(client, "203.0.113.5", 4 * settings.AXES_FAILURE_LIMIT)
    _fail_from(client, "203.0.113.6", 4 * settings.AXES_FAILURE_LIMIT)
    response = client.post(
        LOGIN, {"username": "IronHand", "password": PASSWORD}, HTTP_X_FORWARDED_FOR="198.51.100.7"
    )
    assert response.status_code == 302
    assert "_auth_user_id" in client.session


def test_failures_from_many_addresses_make_every_attempt_for_the_username_wait(
    client, owner, monkeypatch
):
    addresses = [f"203.0.113.{n}" for n in range(1, 4)]
    for address in addresses:  # three addresses: one more counted failure than is free
        _fail_from(client, address, settings.AXES_FAILURE_LIMIT)
    clock = [time.time()]  # the moment of the last failure, however slow the machine is
    monkeypatch.setattr(backoff, "now", lambda: clock[0])
    right = {"username": "ironhand", "password": PASSWORD}  # any spelling of the name
    early = client.post(LOGIN, right, HTTP_X_FORWARDED_FOR="198.51.100.7")
    assert early.status_code == 429
    assert early["Retry-After"] == "1"
    assert "Too many failed sign-ins for this account" in early.content.decode()
    assert "_auth_user_id" not in client.session
    clock[0] += 1  # a second later
    assert client.post(LOGIN, right, HTTP_X_FORWARDED_FOR="198.51.100.7").status_code == 302
    assert "_auth_user_id" in client.session


def test_the_wait_doubles_with_each_counted_failure_up_to_its_maximum():
    free, maximum = settings.SIGNIN_BACKOFF_FREE, settings.SIGNIN_BACKOFF_MAX
    waits = [backoff.wait_seconds(free + n, free, maximum) for n in range(0, 12)]
    assert waits[:5] == [0, 1, 2, 4, 8]
    assert max(waits) == maximum and waits == sorted(waits)
    assert backoff.wait_seconds(10**9, free, maximum) == maximum


def test_the_admin_sign_in_backs_off_too(client, owner, monkeypatch):
    for n in range(1, 4):
        _fail_from(client, f"203.0.113.{n}", settings.AXES_FAILURE_LIMIT)
    frozen = time.time()
    monkeypatch.setattr(backoff, "now", lambda: frozen)
    page = client.post(
        "/admin/login/",
        {"username": "IronHand", "password": PASSWORD, "next": "/admin/"},
        HTTP_X_FORWARDED_FOR="198.51.100.7",
    )
    assert "Too many failed sign-ins for this account" in page.content.decode()
    assert "_auth_user_id" not in client.session
