"""`manage.py backends` and `manage.py routing`, run in-process (exit codes and stderr of the
real processes are covered in test_worker_faults.py)."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from panel.accounts.models import Via
from panel.accounts.origin import Origin
from routing.pool import actions, tables, tasks
from routing.pool.models import Backend, RouteVersion
from tests.routing.pool.conftest import make_apps

pytestmark = pytest.mark.django_db

CLI = Origin(via=Via.CLI)


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


@pytest.fixture
def two_backends(pool_settings):
    actions.do_add_backend("b1", "127.0.0.1:9001", actor=None, origin=CLI)
    actions.do_add_backend("b2", "127.0.0.1:9002", actor=None, origin=CLI)


def test_list_shows_weight_state_and_apps(two_backends):
    make_apps(20)
    counts = tables.apps_per_backend()
    lines = run("backends", "list").splitlines()
    assert lines[0].split() == ["NAME", "ADDRESS", "WEIGHT", "STATE", "APPS"]
    assert lines[1].split() == ["b1", "127.0.0.1:9001", "1", "active", str(counts["b1"])]


def test_add_prints_the_version_and_the_moves(two_backends):
    make_apps(50)
    output = run("backends", "add", "b3", "127.0.0.1:9003", "--weight", "2", "--list-moves")
    # Removing b3 again would move back exactly the apps that adding it moved.
    change_plan = actions.preview("backend.remove", {"name": "b3"}).plan
    version = RouteVersion.current().version
    assert output.startswith(f"version {version}: added b3 (127.0.0.1:9003, weight 2, active)")
    assert f"{change_plan.moved} of 50 apps move" in output
    assert f"  {change_plan.moves[0].key}: " in output


def test_a_dry_run_prints_the_plan_and_changes_nothing(two_backends):
    before = RouteVersion.current().version
    output = run("backends", "drain", "b1", "--dry-run")
    assert output.startswith("would apply: b1: state active -> draining")
    assert Backend.objects.get(name="b1").state == "active"
    assert RouteVersion.current().version == before


def test_remove_of_the_last_active_backend_needs_force(pool_settings):
    actions.do_add_backend("b1", "127.0.0.1:9001", actor=None, origin=CLI)
    with pytest.raises(CommandError, match="no active backend"):
        run("backends", "remove", "b1")
    assert Backend.objects.exists()
    assert "removed b1" in run("backends", "remove", "b1", "--force")


def test_where_names_the_backend_and_the_ranking(two_backends):
    output = run("routing", "where", "IronHand.Example.com")
    table = tables.committed_table()
    best = table.backend_for("ironhand.example.com")
    assert output.splitlines()[0] == f"ironhand.example.com: {best.name} ({best.address})"
    assert "ranking: " + " > ".join(b.name for b in table.ranking("ironhand.example.com")) in output


def test_where_refuses_an_invalid_domain(two_backends):
    with pytest.raises(CommandError, match="invalid host"):
        run("routing", "where", "not a domain")


def test_show_compares_the_database_with_redis(two_backends):
    published = tasks.publish_routes.run()
    change = actions.do_set_weight("b1", 3, actor=None, origin=CLI)
    output = run("routing", "show")
    assert f"database: version {change.version}" in output
    assert f"redis:    version {published}, signature verifies" in output
    assert change.version > published


def test_show_says_when_the_stored_table_does_not_verify(two_backends, redis_client):
    from routing.publish import signature_key, table_key
    from routing.signing import sign
    from tests.routing.support import FORGER

    raw = tables.committed_table().to_json().encode()
    redis_client.mset({table_key("pooltest:"): raw, signature_key("pooltest:"): sign(raw, FORGER)})
    output = run("routing", "show")
    assert "redis:    refused, proxies do not take it (signed by key" in output


def test_publish_publishes_now_and_then_has_nothing_to_do(two_backends):
    version = RouteVersion.current().version
    assert run("routing", "publish").strip() == f"published version {version}"
    assert run("routing", "publish").strip() == f"Redis already holds version {version}"


def test_routekeys_shows_the_key_readers_on_this_machine_trust(settings, tmp_path, capsys):
    from routing.keys import load_or_create_signing_key, trusted_keys_from
    from routing.signing import public_key_text

    settings.VAR_DIR = tmp_path
    key = load_or_create_signing_key(tmp_path)
    call_command("routekeys", "show")
    shown = capsys.readouterr().out.strip()
    assert shown == public_key_text(key.public_key())
    assert [public_key_text(k) for k in trusted_keys_from(tmp_path, None)] == [shown]
