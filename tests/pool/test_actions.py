"""routing.actions: every pool change is one transaction with a version bump and a revision."""

from __future__ import annotations

import pytest

from routing import actions
from routing.models import Backend, Revision, RouteVersion
from tests.pool.conftest import make_apps
from webapps.actions import Origin
from webapps.models import Via

pytestmark = pytest.mark.django_db

CLI = Origin(via=Via.CLI)
ADMIN = Origin(via=Via.ADMIN, client_ip="10.0.0.9", request_id="req-1")


def version() -> int:
    return RouteVersion.current().version


def snapshot():
    rows = Backend.objects.order_by("name").values_list("name", "address", "weight", "state")
    return list(rows), version(), Revision.objects.count()


@pytest.fixture
def two_backends(pool_settings):
    actions.do_add_backend(None, CLI, "b1", "127.0.0.1:9001")
    actions.do_add_backend(None, CLI, "b2", "127.0.0.1:9002")


def test_it_adds_a_backend_under_a_new_version(pool_settings, operator):
    change = actions.do_add_backend(operator, ADMIN, "b1", "127.0.0.1:9001", weight=3)
    assert change.version == 1 == version()
    backend = Backend.objects.get()
    assert (backend.name, backend.address, backend.weight, backend.state) == (
        "b1",
        "127.0.0.1:9001",
        3,
        "active",
    )
    assert change.after.backend("b1").weight == 3


def test_it_records_who_changed_what_and_when(pool_settings, operator):
    actions.do_add_backend(operator, ADMIN, "b1", "127.0.0.1:9001")
    revision = Revision.objects.get()
    assert revision.version == 1
    assert revision.actor == operator
    assert revision.actor_username == "stella"
    assert revision.via == Via.ADMIN
    assert revision.action == "backend.add"
    assert revision.backend_name == "b1"
    assert revision.changes["address"] == [None, "127.0.0.1:9001"]
    assert revision.summary == "added b1 (127.0.0.1:9001, weight 1, active)"


def test_every_change_bumps_the_version_by_one(two_backends):
    actions.do_set_weight(None, CLI, "b1", 2)
    actions.do_drain(None, CLI, "b2")
    actions.do_activate(None, CLI, "b2")
    actions.do_disable(None, CLI, "b2")
    actions.do_update_backend(None, CLI, "b2", notes="new disk")
    actions.do_remove_backend(None, CLI, "b2")
    assert version() == 8
    assert list(Revision.objects.order_by("version").values_list("version", flat=True)) == list(
        range(1, 9)
    )


def test_it_queues_one_publish_after_commit(pool_settings, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        actions.do_add_backend(None, CLI, "b1", "127.0.0.1:9001")
    assert len(callbacks) == 1


def test_a_refused_change_queues_nothing(two_backends, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks, pytest.raises(actions.PoolError):
        actions.do_set_weight(None, CLI, "b1", 0)
    assert callbacks == []


def test_a_change_that_changes_nothing_keeps_the_version(two_backends):
    actions.do_drain(None, CLI, "b2")
    before = snapshot()
    change = actions.do_drain(None, CLI, "b2")
    assert not change.changed
    assert change.version is None
    assert snapshot() == before


def test_it_normalises_the_address(pool_settings):
    change = actions.do_add_backend(None, CLI, "b1", " Node1.Example.COM:0080 ")
    assert change.after.backend("b1").address == "node1.example.com:80"


@pytest.mark.parametrize(
    ("call", "field", "message"),
    [
        (lambda: actions.do_add_backend(None, CLI, "b1", "127.0.0.1:9009"), "name", "already"),
        (lambda: actions.do_add_backend(None, CLI, "B3", "127.0.0.1:9003"), "name", "invalid"),
        (lambda: actions.do_add_backend(None, CLI, "b 3", "127.0.0.1:9003"), "name", "invalid"),
        (lambda: actions.do_add_backend(None, CLI, "b3", "127.0.0.1"), "address", "host:port"),
        (lambda: actions.do_add_backend(None, CLI, "b3", "127.0.0.1:0"), "address", "port"),
        (lambda: actions.do_add_backend(None, CLI, "b3", "127.0.0.1:x"), "address", "host:port"),
        (lambda: actions.do_add_backend(None, CLI, "b3", "bad host:80"), "address", "invalid"),
        (lambda: actions.do_add_backend(None, CLI, "b3", "127.0.0.1:9001"), "address", "used"),
        (lambda: actions.do_add_backend(None, CLI, "b3", "h:1", weight=0), "weight", "weight 0"),
        (lambda: actions.do_add_backend(None, CLI, "b3", "h:1", weight=True), "weight", "True"),
        (lambda: actions.do_add_backend(None, CLI, "b3", "h:1", state="gone"), "state", "gone"),
        (lambda: actions.do_set_weight(None, CLI, "b1", -1), "weight", "whole number"),
        (lambda: actions.do_set_weight(None, CLI, "b9", 2), "name", "no backend named 'b9'"),
        (lambda: actions.do_remove_backend(None, CLI, "b9"), "name", "no backend"),
    ],
)
def test_it_refuses_bad_input_and_changes_nothing(two_backends, call, field, message):
    before = snapshot()
    with pytest.raises(actions.PoolError, match=message) as caught:
        call()
    assert caught.value.field == field
    assert snapshot() == before


@pytest.mark.parametrize(
    "change",
    [
        lambda force: actions.do_remove_backend(None, CLI, "b1", force=force),
        lambda force: actions.do_drain(None, CLI, "b1", force=force),
        lambda force: actions.do_disable(None, CLI, "b1", force=force),
    ],
)
def test_leaving_no_active_backend_needs_force(pool_settings, change):
    actions.do_add_backend(None, CLI, "b1", "127.0.0.1:9001")
    before = snapshot()
    with pytest.raises(actions.PoolError, match="no active backend") as caught:
        change(False)
    assert caught.value.field == "force"
    assert snapshot() == before
    assert change(True).version == 2


def test_removing_one_of_two_needs_no_force(two_backends):
    assert actions.do_remove_backend(None, CLI, "b1").version == 3


def test_it_records_how_many_apps_move_and_where(two_backends):
    make_apps(200)
    change = actions.do_add_backend(None, CLI, "b3", "127.0.0.1:9003")
    revision = Revision.objects.get(version=change.version)
    assert revision.apps_total == 200
    assert revision.apps_moved == change.plan.moved > 0
    assert sum(m["count"] for m in revision.moves) == revision.apps_moved
    assert {m["to"] for m in revision.moves} == {"b3"}
    assert {m["from"] for m in revision.moves} <= {"b1", "b2"}


def test_the_preview_predicts_what_the_change_does(two_backends):
    make_apps(300)
    preview = actions.preview("backend.set_weight", {"name": "b2", "weight": 3})
    before = snapshot()
    change = actions.do_set_weight(None, CLI, "b2", 3)
    assert preview.version is None
    assert change.plan == preview.plan
    assert change.after.backends == preview.after.backends
    assert snapshot() != before


def test_a_preview_changes_nothing(two_backends):
    before = snapshot()
    actions.preview("backend.add", {"name": "b3", "address": "127.0.0.1:9003"})
    actions.preview("backend.remove", {"name": "b1"})
    assert snapshot() == before


def test_a_preview_refuses_what_the_action_refuses(two_backends):
    with pytest.raises(actions.PoolError, match="already exists"):
        actions.preview("backend.add", {"name": "b1", "address": "127.0.0.1:9009"})


def test_bumping_the_version_moves_past_a_given_version(two_backends):
    assert actions.do_bump_version(None, CLI, 40) == 41
    assert version() == 41
    assert Revision.objects.get(version=41).action == "version.bump"
    assert actions.do_bump_version(None, CLI, 3) == 42
