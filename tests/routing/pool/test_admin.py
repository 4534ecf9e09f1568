"""The pool's admin: every change passes a confirmation page that names the apps that move."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.utils.html import escape

from panel.accounts.models import Via
from panel.accounts.origin import Origin
from routing.pool import actions
from routing.pool.models import Backend, Revision, RouteVersion
from tests.routing.pool.conftest import make_apps, snapshot

pytestmark = pytest.mark.django_db

CLI = Origin(via=Via.CLI)
ADD_URL = "/admin/routing/backend/add/"
LIST_URL = "/admin/routing/backend/"


@pytest.fixture(autouse=True)
def static_root():
    # WhiteNoise warns (an error here) when STATIC_ROOT is missing in a fresh clone.
    Path(django_settings.STATIC_ROOT).mkdir(parents=True, exist_ok=True)


@pytest.fixture
def admin_client(client, staff, pool_settings):
    client.force_login(staff)
    return client


def change_url(name: str) -> str:
    return f"/admin/routing/backend/{Backend.objects.get(name=name).pk}/change/"


def form(**fields) -> dict:
    data = {"address": "", "weight": "1", "state": "active", "notes": "", "_save": "Save"}
    data.update({k: str(v) for k, v in fields.items()})
    return data


def test_the_list_shows_weight_state_and_apps(admin_client, two_backends):
    make_apps(40)
    actions.do_set_weight("b2", 7, actor=None, origin=CLI)
    page = admin_client.get(LIST_URL).content.decode()
    assert "127.0.0.1:9002" in page
    assert ">7<" in page
    assert "active" in page
    assert 'class="field-apps"' in page


def test_adding_shows_the_moves_before_anything_is_saved(admin_client, two_backends):
    make_apps(90)
    before = snapshot()
    response = admin_client.post(ADD_URL, form(name="b3", address="127.0.0.1:9003"))
    assert response.status_code == 200
    page = response.content.decode()
    plan = actions.preview("backend.add", {"name": "b3", "address": "127.0.0.1:9003"}).plan
    assert escape(plan.summary()) in page
    assert f"{plan.moves[0].key}: {plan.moves[0].source} &rarr; b3" in page
    assert 'name="_confirmed"' in page
    assert snapshot() == before


def test_confirming_adds_the_backend_through_the_action(admin_client, two_backends, staff):
    data = form(name="b3", address="127.0.0.1:9003", _confirmed="1")
    before = RouteVersion.current().version
    response = admin_client.post(ADD_URL, data)
    assert response.status_code == 302
    assert Backend.objects.get(name="b3").address == "127.0.0.1:9003"
    revision = Revision.objects.get(version=RouteVersion.current().version)
    assert revision.version > before
    assert (revision.action, revision.actor, revision.via) == ("backend.add", staff, Via.ADMIN)


def test_changing_the_weight_is_confirmed_then_saved(admin_client, two_backends):
    make_apps(60)
    url = change_url("b2")
    data = form(address="127.0.0.1:9002", weight=4)
    page = admin_client.post(url, data).content.decode()
    assert "b2: weight 1 -&gt; 4" in page
    assert Backend.objects.get(name="b2").weight == 1
    assert admin_client.post(url, {**data, "_confirmed": "1"}).status_code == 302
    assert Backend.objects.get(name="b2").weight == 4


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": "b1", "address": "127.0.0.1:9009"}, "already exists"),
        ({"name": "b3", "address": "127.0.0.1:9003", "weight": 0}, "invalid weight 0"),
        ({"name": "b3", "address": "no port here"}, "host:port"),
        ({"name": "B 3", "address": "127.0.0.1:9003"}, "invalid backend name"),
    ],
)
def test_invalid_input_is_shown_on_the_form_and_nothing_changes(
    admin_client, two_backends, fields, message
):
    before = snapshot()
    for extra in ({}, {"_confirmed": "1"}):
        response = admin_client.post(ADD_URL, form(**fields, **extra))
        assert response.status_code == 200
        assert message in response.content.decode()
    assert snapshot() == before


def test_draining_from_the_list_is_confirmed_then_applied(admin_client, two_backends):
    make_apps(30)
    pk = Backend.objects.get(name="b1").pk
    data = {"action": "drain_selected", "_selected_action": [str(pk)]}
    page = admin_client.post(LIST_URL, data).content.decode()
    assert "b1: state active -&gt; draining" in page
    assert Backend.objects.get(name="b1").state == "active"
    admin_client.post(LIST_URL, {**data, "_confirmed": "1"})
    assert Backend.objects.get(name="b1").state == "draining"


def test_draining_every_active_backend_needs_the_force_box(admin_client, two_backends):
    pks = [str(pk) for pk in Backend.objects.values_list("pk", flat=True)]
    data = {"action": "drain_selected", "_selected_action": pks}
    page = admin_client.post(LIST_URL, data).content.decode()
    assert "no backend is active" in page
    before = snapshot()
    response = admin_client.post(LIST_URL, {**data, "_confirmed": "1"}, follow=True)
    assert "no active backend" in response.content.decode()
    assert snapshot() == before
    admin_client.post(LIST_URL, {**data, "_confirmed": "1", "force": "on"})
    assert set(Backend.objects.values_list("state", flat=True)) == {"draining"}


def test_deleting_shows_the_moves_then_removes(admin_client, two_backends):
    make_apps(30)
    url = change_url("b2").replace("/change/", "/delete/")
    page = admin_client.get(url).content.decode()
    assert "removed b2" in page
    plan = actions.preview("backend.remove", {"name": "b2"}).plan
    assert escape(plan.summary()) in page
    assert f"{plan.moves[0].key}: b2 &rarr; b1" in page
    assert Backend.objects.filter(name="b2").exists()
    assert admin_client.post(url, {"_confirmed": "1"}).status_code == 302
    assert not Backend.objects.filter(name="b2").exists()


def test_deleting_the_last_active_backend_needs_the_force_box(admin_client, pool_settings):
    actions.do_add_backend("b1", "127.0.0.1:9001", actor=None, origin=CLI)
    url = change_url("b1").replace("/change/", "/delete/")
    admin_client.post(url, {"_confirmed": "1"})
    assert Backend.objects.filter(name="b1").exists()
    admin_client.post(url, {"_confirmed": "1", "force": "on"})
    assert not Backend.objects.exists()


def test_the_revision_history_lists_changes(admin_client, two_backends):
    page = admin_client.get("/admin/routing/revision/").content.decode()
    assert "added b1 (127.0.0.1:9001, weight 1, active)" in page
    assert "added b2" in page


def test_a_user_who_is_not_staff_cannot_reach_the_pool(client, outsider, pool_settings):
    client.force_login(outsider)
    response = client.post(ADD_URL, form(name="b3", address="127.0.0.1:9003", _confirmed="1"))
    assert response.status_code == 302
    assert "/login/" in response["Location"]
    assert not Backend.objects.exists()


def test_the_add_and_change_forms_render(admin_client, two_backends):
    assert 'name="force"' in admin_client.get(ADD_URL).content.decode()
    page = admin_client.get(change_url("b1")).content.decode()
    assert "127.0.0.1:9001" in page
    assert 'name="name"' not in page  # a backend is never renamed
