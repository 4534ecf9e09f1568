"""Signing in and out, with brute-force protection keyed on username and address."""

import pytest
from django.conf import settings

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
