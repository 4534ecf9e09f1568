"""POST /api/v0/user/<username>/webapps/<domain>/enable/ and .../disable/"""

import pytest

from panel.accounts.models import AuditEvent
from webapps.models import WebApp

pytestmark = pytest.mark.django_db

URL = "/api/v0/user/IronHand/webapps/IronHand.Example.com/"


def test_it_disables_an_app_answering_status_ok_and_audits_it(owner_api, owner_app):
    response = owner_api.post(URL + "disable/")
    assert (response.status_code, response.json()) == (200, {"status": "OK"})
    assert WebApp.objects.get().enabled is False
    event = AuditEvent.objects.get(action="webapp.disable")
    assert (event.outcome, event.target) == ("ok", "ironhand.example.com")


def test_it_enables_it_again(owner_api, owner_app):
    WebApp.objects.update(enabled=False)
    response = owner_api.post(URL + "enable/")
    assert (response.status_code, response.json()) == (200, {"status": "OK"})
    assert WebApp.objects.get().enabled is True
    assert AuditEvent.objects.filter(action="webapp.enable").count() == 1


def test_enabling_an_enabled_app_writes_nothing(owner_api, owner_app):
    before = WebApp.objects.get().updated_at
    assert owner_api.post(URL + "enable/").json() == {"status": "OK"}
    assert WebApp.objects.get().updated_at == before
    assert not AuditEvent.objects.filter(action="webapp.enable").exists()


@pytest.mark.parametrize("action", ["enable", "disable"])
def test_it_gives_the_outsider_a_404_and_changes_nothing(outsider_api, owner_app, action):
    WebApp.objects.update(enabled=action == "disable")
    response = outsider_api.post(URL + f"{action}/")
    assert response.status_code == 404
    assert WebApp.objects.get().enabled is (action == "disable")
    denied = AuditEvent.objects.get(outcome="denied")
    assert (denied.actor_username, denied.action) == ("mallory", f"webapp.{action}")


@pytest.mark.parametrize("action", ["enable", "disable"])
def test_get_is_405(owner_api, owner_app, action):
    assert owner_api.get(URL + f"{action}/").status_code == 405


def test_it_answers_401_without_credentials(client, owner_app):
    response = client.post(URL + "disable/")
    assert response.status_code == 401
    assert WebApp.objects.get().enabled is True
