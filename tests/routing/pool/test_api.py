"""The staff API: /api/v0/backends/, /api/v0/routing/, /api/v0/routing/where/."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from panel.accounts.models import Via
from panel.accounts.origin import Origin
from routing.pool import actions, tasks
from routing.pool.models import Backend, Revision, RouteVersion
from tests.routing.pool.conftest import make_apps, snapshot

pytestmark = pytest.mark.django_db

CLI = Origin(via=Via.CLI)


def test_it_lists_the_pool_with_app_counts(two_backends, staff_api):
    make_apps(50)
    response = staff_api.get("/api/v0/backends/")
    assert response.status_code == 200
    body = response.json()
    assert [b["name"] for b in body] == ["b1", "b2"]
    assert sum(b["apps"] for b in body) == 50
    assert body[0]["weight"] == 1 and body[0]["state"] == "active"


def test_it_adds_a_backend(two_backends, staff_api, staff):
    make_apps(60)
    before = RouteVersion.current().version
    response = staff_api.post(
        "/api/v0/backends/", {"name": "b3", "address": "127.0.0.1:9003"}, format="json"
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["version"] == RouteVersion.current().version > before
    assert body["backend"]["name"] == "b3"
    assert body["apps_moved"] == sum(m["count"] for m in body["moves"]) > 0
    revision = Revision.objects.get(version=body["version"])
    assert (revision.actor, revision.via) == (staff, Via.API)


def test_a_dry_run_changes_nothing(two_backends, staff_api):
    before = snapshot()
    response = staff_api.post(
        "/api/v0/backends/?dry_run=1", {"name": "b3", "address": "127.0.0.1:9003"}, format="json"
    )
    assert response.status_code == 200
    assert response.json()["dry_run"] is True
    assert response.json()["version"] is None
    assert snapshot() == before


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"name": "b1", "address": "127.0.0.1:9009"}, "name", "already exists"),
        ({"name": "b3", "address": "127.0.0.1:9003", "weight": 0}, "weight", "greater than"),
        ({"name": "b3", "address": "nonsense"}, "address", "host:port"),
        ({"name": "b3", "address": "127.0.0.1:9001"}, "address", "already used"),
        ({"name": "B3!", "address": "127.0.0.1:9003"}, "name", "invalid backend name"),
        ({"name": "b3", "address": "127.0.0.1:9003", "state": "gone"}, "state", "not a valid"),
        ({"name": "b3", "address": "127.0.0.1:9003", "colour": "red"}, "colour", "Unknown"),
        ({"name": "b3", "address": 9003}, "address", "valid string"),
    ],
)
def test_it_refuses_bad_input_with_400_and_changes_nothing(
    two_backends, staff_api, data, field, message
):
    before = snapshot()
    response = staff_api.post("/api/v0/backends/", data, format="json")
    assert response.status_code == 400
    body = response.json()
    assert message in " ".join(body[field])
    assert message in body["detail"]
    assert snapshot() == before


def test_it_changes_the_weight(two_backends, staff_api):
    response = staff_api.patch("/api/v0/backends/b2/", {"weight": 3}, format="json")
    assert response.status_code == 200
    assert response.json()["backend"]["weight"] == 3
    assert Backend.objects.get(name="b2").weight == 3


def test_it_refuses_a_rename(two_backends, staff_api):
    response = staff_api.patch("/api/v0/backends/b2/", {"name": "b9"}, format="json")
    assert response.status_code == 400
    assert "cannot be renamed" in response.json()["detail"]


def test_draining_the_last_active_backend_needs_force(two_backends, staff_api):
    staff_api.patch("/api/v0/backends/b1/", {"state": "draining"}, format="json")
    before = snapshot()
    response = staff_api.patch("/api/v0/backends/b2/", {"state": "draining"}, format="json")
    assert response.status_code == 400
    assert "no active backend" in response.json()["detail"]
    assert snapshot() == before
    forced = staff_api.patch(
        "/api/v0/backends/b2/", {"state": "draining", "force": True}, format="json"
    )
    assert forced.status_code == 200


def test_removing_the_last_active_backend_needs_force(pool_settings, staff_api):
    actions.do_add_backend("b1", "127.0.0.1:9001", actor=None, origin=CLI)
    response = staff_api.delete("/api/v0/backends/b1/")
    assert response.status_code == 400
    assert Backend.objects.filter(name="b1").exists()
    assert staff_api.delete("/api/v0/backends/b1/?force=1").status_code == 200
    assert not Backend.objects.exists()


def test_an_unknown_backend_is_404(two_backends, staff_api):
    assert staff_api.get("/api/v0/backends/b9/").status_code == 404
    assert staff_api.patch("/api/v0/backends/b9/", {"weight": 2}, format="json").status_code == 404
    assert staff_api.delete("/api/v0/backends/b9/").status_code == 404


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/v0/backends/"),
        ("post", "/api/v0/backends/"),
        ("get", "/api/v0/backends/b1/"),
        ("patch", "/api/v0/backends/b1/"),
        ("delete", "/api/v0/backends/b1/"),
        ("get", "/api/v0/routing/"),
        ("get", "/api/v0/routing/where/?domain=example.com"),
    ],
)
def test_a_user_who_is_not_staff_is_refused(two_backends, outsider_api, method, path):
    before = snapshot()
    data = {"name": "b3", "address": "127.0.0.1:9003", "weight": 2}
    response = getattr(outsider_api, method)(path, data, format="json")
    assert response.status_code == 403
    assert snapshot() == before


def test_an_anonymous_caller_is_asked_to_authenticate(two_backends):
    response = APIClient().get("/api/v0/backends/")
    assert response.status_code == 401


def test_routing_shows_the_committed_and_the_published_table(two_backends, staff_api):
    published = tasks.publish_routes.run()
    change = actions.do_set_weight("b1", 4, actor=None, origin=CLI)  # committed, not published
    body = staff_api.get("/api/v0/routing/").json()
    assert body["committed"]["version"] == change.version > published
    assert body["published"]["version"] == published
    assert body["in_sync"] is False
    assert [b["name"] for b in body["committed"]["backends"]] == ["b1", "b2"]


def test_where_names_the_backend_and_ranking_of_a_domain(two_backends, staff_api):
    response = staff_api.get("/api/v0/routing/where/", {"domain": "IronHand.Example.COM."})
    assert response.status_code == 200
    body = response.json()
    assert body["domain"] == "ironhand.example.com"
    assert body["backend"]["name"] == body["ranking"][0]
    assert sorted(body["ranking"]) == ["b1", "b2"]


@pytest.mark.parametrize("query", [{}, {"domain": ""}, {"domain": "bad domain/x"}])
def test_where_refuses_a_missing_or_invalid_domain(two_backends, staff_api, query):
    response = staff_api.get("/api/v0/routing/where/", query)
    assert response.status_code == 400
    assert "domain" in response.json()["detail"]
