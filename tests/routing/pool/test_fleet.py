"""The fleet view: the admin's fleet page, `manage.py routing status` and GET /api/v0/fleet/,
from heartbeats in the test's own Redis (written as the proxies and nodes write them)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core.management import call_command
from rest_framework.test import APIClient

from panel.accounts.models import Via
from panel.accounts.origin import Origin
from routing.connect import sync_client
from routing.fleet import Member, member_key
from routing.pool import actions, tables, tasks
from routing.pool.models import Backend, Revision, RouteVersion
from routing.publish import table_key
from routing.table import RouteTable
from tests.routing.pool.conftest import make_apps

pytestmark = pytest.mark.django_db

CLI = Origin(via=Via.CLI)
FLEET_URL = "/admin/routing/backend/fleet/"


@pytest.fixture(autouse=True)
def static_root():
    Path(django_settings.STATIC_ROOT).mkdir(parents=True, exist_ok=True)


@pytest.fixture
def report(pool_settings, redis_server):
    """Write one member's heartbeat, as routing.fleet.Heartbeat does."""
    client = sync_client(redis_server.url, timeout=5)

    def write(role: str, name: str, version: int | None, **fields) -> Member:
        member = Member(name=name, role=role, version=version, at=time.time(), **fields)
        key = member_key(role, name, pool_settings.REDIS_PREFIX)
        client.set(key, member.to_json(), px=15_000)
        return member

    yield write
    client.close()


@pytest.fixture
def fleet(two_backends, report):
    """The second change committed and published; two proxy workers and two nodes, one node
    behind (at the first change's version). Returns (current version, the one behind)."""
    tasks.publish_routes.run()
    current = RouteVersion.current().version
    behind = Revision.objects.order_by("version").values_list("version", flat=True)[0]
    assert behind < current
    taken = RouteVersion.current().changed_at.timestamp() + 0.041
    report("proxy", "p1/0", current, address="127.0.0.1:8080", redis_connected=True, taken_at=taken)
    report("proxy", "p1/1", current, address="127.0.0.1:8080", redis_connected=True, rps=12.5)
    report(
        "node", "b1", current, address="127.0.0.1:9001", redis_connected=True, down=["x.example"]
    )
    report("node", "b2", behind, address="127.0.0.1:9002", redis_connected=False)
    return current, behind


def status_json() -> dict:
    out = StringIO()
    call_command("routing", "status", "--json", stdout=out)
    return json.loads(out.getvalue())


def test_the_api_shows_each_member_against_the_current_version(fleet, staff_api):
    body = staff_api.get("/api/v0/fleet/").json()
    assert body["summary"] == f"2/2 proxies and 1/2 nodes hold version {fleet[0]}"
    assert body["converged"] is False
    rows = {m["name"]: m for m in body["members"]}
    assert list(rows) == ["p1/0", "p1/1", "b1", "b2"]
    assert (rows["b2"]["converged"], rows["b2"]["redis_connected"]) == (False, False)
    assert rows["b1"]["down"] == ["x.example"]
    assert rows["p1/1"]["rps"] == 12.5
    assert [b["name"] for b in body["backends"]] == ["b1", "b2"]


def test_once_every_member_holds_it_the_line_says_how_long_it_took(fleet, report, staff_api):
    report("node", "b2", fleet[0], redis_connected=True)
    body = staff_api.get("/api/v0/fleet/").json()
    assert body["summary"] == f"2/2 proxies and 2/2 nodes hold version {fleet[0]}, 41 ms"
    assert body["converged"] is True


def test_a_member_whose_heartbeat_expired_is_gone(fleet, pool_settings, redis_server, staff_api):
    client = sync_client(redis_server.url, timeout=5)
    client.delete(member_key("node", "b2", pool_settings.REDIS_PREFIX))
    client.close()
    assert staff_api.get("/api/v0/fleet/").json()["counts"]["node"] == {"holding": 1, "total": 1}


def test_outsiders_and_anonymous_callers_are_refused_as_by_the_staff_api(fleet, outsider_api):
    assert outsider_api.get("/api/v0/fleet/").status_code == 403
    assert APIClient().get("/api/v0/fleet/").status_code == 401


def test_the_api_refuses_a_version_that_is_not_a_number(fleet, staff_api):
    response = staff_api.get("/api/v0/fleet/", {"version": "twelve"})
    assert response.status_code == 400


def test_the_command_prints_the_same_status(fleet, staff_api):
    assert status_json() == {**staff_api.get("/api/v0/fleet/").json(), "members": ANY_MEMBERS}
    out = StringIO()
    call_command("routing", "status", stdout=out)
    lines = out.getvalue().splitlines()
    assert lines[0] == f"2/2 proxies and 1/2 nodes hold version {fleet[0]}"
    assert any(line.split()[:2] == ["node", "b2"] and "BEHIND" in line for line in lines)


class _AnyMembers:
    def __eq__(self, other) -> bool:  # last_seen differs between two reads
        return isinstance(other, list) and len(other) == 4


ANY_MEMBERS = _AnyMembers()


def test_the_fleet_page_shows_members_bars_and_pending_moves(fleet, admin_client):
    make_apps(40)
    new = actions.do_set_weight("b1", 3, actor=None, origin=CLI).version  # not yet published
    page = admin_client.get(FLEET_URL).content.decode()
    assert f"0/2 proxies and 0/2 nodes hold version {new}" in page
    assert page.count('class="member"') == 4
    counts = tables.apps_per_backend()
    assert f'title="{counts["b1"]} apps"' in page and f'title="{counts["b2"]} apps"' in page
    published = RouteTable.from_json(
        tasks.redis_client().get(table_key(django_settings.REDIS_PREFIX))
    )
    plan = tables.plan(published, tables.committed_table())
    assert f"Pending: version {fleet[0]} &rarr; {new} moves {plan.moved} apps" in page
    assert f"{plan.moves[0].key}: {plan.moves[0].source} &rarr; {plan.moves[0].target}" in page


def test_the_fleet_page_is_for_staff_only(fleet, client, outsider):
    client.force_login(outsider)
    response = client.get(FLEET_URL)
    assert response.status_code == 302
    assert "/login/" in response["Location"]


def test_after_a_pool_change_the_admin_follows_it_to_the_fleet(fleet, admin_client, report):
    data = {
        "action": "drain_selected",
        "_selected_action": [str(Backend.objects.get(name="b1").pk)],
        "_confirmed": "1",
    }
    response = admin_client.post("/admin/routing/backend/", data)
    assert response.status_code == 302
    new = RouteVersion.current().version
    assert new > fleet[0]
    assert response["Location"] == f"{FLEET_URL}?version={new}"
    page = admin_client.get(response["Location"]).content.decode()
    assert f"0/2 proxies and 0/2 nodes hold version {new}" in page
    assert 'http-equiv="refresh"' in page  # until every member holds it
    tasks.publish_routes.run()
    for role, name in [("proxy", "p1/0"), ("proxy", "p1/1"), ("node", "b1"), ("node", "b2")]:
        report(role, name, new, taken_at=RouteVersion.current().changed_at.timestamp() + 0.012)
    page = admin_client.get(response["Location"]).content.decode()
    assert f"2/2 proxies and 2/2 nodes hold version {new}, 12 ms" in page
    assert 'http-equiv="refresh"' not in page


@pytest.fixture
def reported_isolation_and_certificates(fleet, report, settings):
    """b1 sandboxes its apps, b2 does not; p1/0 holds a certificate due in 10 days (within the
    30-day renewal window), p1/1 one due in 60; the nearest expiry of each."""
    settings.ACME_RENEW_DAYS_BEFORE = 30
    now = time.time()
    soon, later = now + 10 * 86_400 + 600, now + 60 * 86_400 + 600
    on = "isolation: on (bubblewrap sandbox per app process)"
    report("node", "b1", fleet[0], isolation=True, in_force=(on,))
    report("node", "b2", fleet[1], isolation=False, in_force=("isolation: off (not root)",))
    report("proxy", "p1/0", fleet[0], certificates=3, certs_not_after=soon)
    report("proxy", "p1/1", fleet[0], certificates=2, certs_not_after=later)
    return soon, later


def test_each_node_says_whether_it_isolates_its_apps(
    reported_isolation_and_certificates, staff_api, admin_client
):
    body = staff_api.get("/api/v0/fleet/").json()
    rows = {m["name"]: m for m in body["members"]}
    assert (rows["b1"]["isolation"], rows["b2"]["isolation"]) == ("on", "off")
    assert rows["b2"]["in_force"] == ["isolation: off (not root)"]
    assert rows["p1/0"]["isolation"] is None  # a proxy runs no apps
    assert body["isolation_off"] == ["b2"]
    lines = status_lines()
    assert any(line.split()[:2] == ["node", "b2"] and "isolation: off" in line for line in lines)
    assert any(line.split()[:2] == ["node", "b1"] and "isolation: on" in line for line in lines)
    assert "isolation: off (apps share the node's user) on b2" in lines
    page = admin_client.get(FLEET_URL).content.decode()
    assert "isolation: off on b2" in page
    assert page.count('<span class="fleet-behind">isolation: off</span>') == 1
    assert page.count('<span class="fleet-ok">isolation: on</span>') == 1


def test_each_proxy_counts_its_certificates_and_the_nearest_expiring_is_flagged(
    reported_isolation_and_certificates, staff_api, admin_client
):
    soon, _ = reported_isolation_and_certificates
    body = staff_api.get("/api/v0/fleet/").json()
    rows = {m["name"]: m for m in body["members"]}
    assert (rows["p1/0"]["certificates"], rows["p1/1"]["certificates"]) == (3, 2)
    assert (rows["p1/0"]["expires_in_days"], rows["p1/1"]["expires_in_days"]) == (10.0, 60.0)
    assert (rows["p1/0"]["expiring"], rows["p1/1"]["expiring"]) == (True, False)
    assert rows["p1/0"]["nearest_expiry"] == datetime.fromtimestamp(soon, UTC).isoformat(
        timespec="seconds"
    )
    assert rows["b1"]["certificates"] is None  # nodes hold none
    assert (body["certificates_expiring"], body["renew_days_before"]) == (["p1/0"], 30)
    lines = status_lines()
    day = datetime.fromtimestamp(soon, UTC).date().isoformat()
    p10 = next(line for line in lines if line.split()[:2] == ["proxy", "p1/0"])
    assert p10.endswith(f"certificates 3, nearest expiry {day} (10 d)  EXPIRING")
    p11 = next(line for line in lines if line.split()[:2] == ["proxy", "p1/1"])
    assert "certificates 2, nearest expiry" in p11 and "EXPIRING" not in p11
    assert "certificates expiring within the renewal window (30 days) on p1/0" in lines
    page = admin_client.get(FLEET_URL).content.decode()
    assert "Certificates expiring within the renewal window (30 days) on p1/0." in page
    assert f"3, nearest expiry {day}" in page
    assert page.count('class="fleet-behind expiring"') == 1


def test_a_member_that_reports_neither_shows_neither(fleet, staff_api):
    body = staff_api.get("/api/v0/fleet/").json()
    assert {(m["isolation"], m["certificates"], m["expiring"]) for m in body["members"]} == {
        (None, None, False)
    }
    assert (body["isolation_off"], body["certificates_expiring"]) == ([], [])


def status_lines() -> list[str]:
    out = StringIO()
    call_command("routing", "status", stdout=out)
    return out.getvalue().splitlines()
