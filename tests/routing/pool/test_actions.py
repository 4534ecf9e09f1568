"""routing.actions: every pool change is one transaction with a version bump and a revision."""

from __future__ import annotations

import itertools

import pytest

from panel.accounts.models import Via
from panel.accounts.origin import Origin
from routing.pool import actions
from routing.pool.models import Backend, Revision, RouteVersion
from tests.routing.pool.conftest import make_apps

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
    actions.do_add_backend("b1", "127.0.0.1:9001", actor=None, origin=CLI)
    actions.do_add_backend("b2", "127.0.0.1:9002", actor=None, origin=CLI)


def test_it_adds_a_backend_under_a_new_version(pool_settings, staff):
    before = version()
    change = actions.do_add_backend("b1", "127.0.0.1:9001", actor=staff, origin=ADMIN, weight=3)
    assert change.version == version() > before
    backend = Backend.objects.get()
    assert (backend.name, backend.address, backend.weight, backend.state) == (
        "b1",
        "127.0.0.1:9001",
        3,
        "active",
    )
    assert change.after.backend("b1").weight == 3


def test_it_records_who_changed_what_and_when(pool_settings, staff):
    actions.do_add_backend("b1", "127.0.0.1:9001", actor=staff, origin=ADMIN)
    revision = Revision.objects.get()
    assert revision.version == version() > 0
    assert revision.created_at == RouteVersion.current().changed_at
    assert revision.actor == staff
    assert revision.actor_username == "stella"
    assert revision.via == Via.ADMIN
    assert revision.action == "backend.add"
    assert revision.backend_name == "b1"
    assert revision.changes["address"] == [None, "127.0.0.1:9001"]
    assert revision.summary == "added b1 (127.0.0.1:9001, weight 1, active)"


def test_every_change_bumps_the_version_by_one(two_backends):
    actions.do_set_weight("b1", 2, actor=None, origin=CLI)
    actions.do_drain("b2", actor=None, origin=CLI)
    actions.do_activate("b2", actor=None, origin=CLI)
    actions.do_disable("b2", actor=None, origin=CLI)
    actions.do_update_backend("b2", actor=None, origin=CLI, notes="new disk")
    actions.do_remove_backend("b2", actor=None, origin=CLI)
    # One revision per change (two adds, six changes), each under a greater version than the
    # one before it, the last one the database's version.
    versions = list(Revision.objects.order_by("pk").values_list("version", flat=True))
    assert len(versions) == 8
    assert all(a < b for a, b in itertools.pairwise(versions))
    assert version() == versions[-1]


def test_it_queues_one_publish_after_commit(pool_settings, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        actions.do_add_backend("b1", "127.0.0.1:9001", actor=None, origin=CLI)
    assert len(callbacks) == 1


def test_a_refused_change_queues_nothing(two_backends, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks, pytest.raises(actions.ActionError):
        actions.do_set_weight("b1", 0, actor=None, origin=CLI)
    assert callbacks == []


def test_a_change_that_changes_nothing_keeps_the_version(two_backends):
    actions.do_drain("b2", actor=None, origin=CLI)
    before = snapshot()
    change = actions.do_drain("b2", actor=None, origin=CLI)
    assert not change.changed
    assert change.version is None
    assert snapshot() == before


def test_it_normalises_the_address(pool_settings):
    change = actions.do_add_backend("b1", " Node1.Example.COM:0080 ", actor=None, origin=CLI)
    assert change.after.backend("b1").address == "node1.example.com:80"


@pytest.mark.parametrize(
    ("call", "field", "message"),
    [
        (
            lambda: actions.do_add_backend("b1", "127.0.0.1:9009", actor=None, origin=CLI),
            "name",
            "already",
        ),
        (
            lambda: actions.do_add_backend("B3", "127.0.0.1:9003", actor=None, origin=CLI),
            "name",
            "invalid",
        ),
        (
            lambda: actions.do_add_backend("b 3", "127.0.0.1:9003", actor=None, origin=CLI),
            "name",
            "invalid",
        ),
        (
            lambda: actions.do_add_backend("b3", "127.0.0.1", actor=None, origin=CLI),
            "address",
            "host:port",
        ),
        (
            lambda: actions.do_add_backend("b3", "127.0.0.1:0", actor=None, origin=CLI),
            "address",
            "port",
        ),
        (
            lambda: actions.do_add_backend("b3", "127.0.0.1:x", actor=None, origin=CLI),
            "address",
            "host:port",
        ),
        (
            lambda: actions.do_add_backend("b3", "bad host:80", actor=None, origin=CLI),
            "address",
            "invalid",
        ),
        (
            lambda: actions.do_add_backend("b3", "127.0.0.1:9001", actor=None, origin=CLI),
            "address",
            "used",
        ),
        (
            lambda: actions.do_add_backend("b3", "h:1", actor=None, origin=CLI, weight=0),
            "weight",
            "weight 0",
        ),
        (
            lambda: actions.do_add_backend("b3", "h:1", actor=None, origin=CLI, weight=True),
            "weight",
            "True",
        ),
        (
            lambda: actions.do_add_backend("b3", "h:1", actor=None, origin=CLI, state="gone"),
            "state",
            "gone",
        ),
        (lambda: actions.do_set_weight("b1", -1, actor=None, origin=CLI), "weight", "whole number"),
        (
            lambda: actions.do_set_weight("b9", 2, actor=None, origin=CLI),
            "name",
            "no backend named 'b9'",
        ),
        (lambda: actions.do_remove_backend("b9", actor=None, origin=CLI), "name", "no backend"),
    ],
)
def test_it_refuses_bad_input_and_changes_nothing(two_backends, call, field, message):
    before = snapshot()
    with pytest.raises(actions.ActionError, match=message) as caught:
        call()
    assert caught.value.field == field
    assert snapshot() == before


@pytest.mark.parametrize(
    "change",
    [
        lambda force: actions.do_remove_backend("b1", actor=None, origin=CLI, force=force),
        lambda force: actions.do_drain("b1", actor=None, origin=CLI, force=force),
        lambda force: actions.do_disable("b1", actor=None, origin=CLI, force=force),
    ],
)
def test_leaving_no_active_backend_needs_force(pool_settings, change):
    actions.do_add_backend("b1", "127.0.0.1:9001", actor=None, origin=CLI)
    before = snapshot()
    with pytest.raises(actions.ActionError, match="no active backend") as caught:
        change(False)
    assert caught.value.field == "force"
    assert snapshot() == before
    assert change(True).version == version() > before[1]
    assert Revision.objects.count() == before[2] + 1


def test_removing_one_of_two_needs_no_force(two_backends):
    before = version()
    assert actions.do_remove_backend("b1", actor=None, origin=CLI).version == version() > before


def test_it_records_how_many_apps_move_and_where(two_backends):
    make_apps(200)
    change = actions.do_add_backend("b3", "127.0.0.1:9003", actor=None, origin=CLI)
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
    change = actions.do_set_weight("b2", 3, actor=None, origin=CLI)
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
    with pytest.raises(actions.ActionError, match="already exists"):
        actions.preview("backend.add", {"name": "b1", "address": "127.0.0.1:9009"})


def test_bumping_the_version_moves_past_a_given_version(two_backends):
    # A version held ahead of the database and of the clock (a publisher whose clock was ahead).
    ahead = version() + 10**9
    assert actions.do_bump_version(ahead, actor=None, origin=CLI) == ahead + 1
    assert version() == ahead + 1
    assert Revision.objects.get(version=ahead + 1).action == "version.bump"
    # A version below the database's: the version still moves on, by one, never back.
    assert actions.do_bump_version(3, actor=None, origin=CLI) == ahead + 2
