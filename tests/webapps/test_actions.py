"""The actions themselves: one transaction, one audit row, precise refusals."""

import pytest
from django.conf import settings

from panel.accounts.models import AuditEvent
from tests.conftest import CLI, make_user
from webapps import actions
from webapps.models import ReloadEvent, WebApp

pytestmark = pytest.mark.django_db


def audit_actions(outcome="ok"):
    return list(AuditEvent.objects.filter(outcome=outcome).values_list("action", "target"))


def test_it_creates_an_app_with_the_canonical_domain(owner):
    webapp = actions.do_create_webapp("IronHand.Example.COM.", actor=owner, origin=CLI)
    assert webapp.domain == "ironhand.example.com"
    assert WebApp.objects.get().owner == owner


def test_it_defaults_the_source_to_the_home_and_writes_a_starter(owner):
    webapp = actions.do_create_webapp("IronHand.example.com", actor=owner, origin=CLI)
    expected = settings.HOME_ROOT / "ironhand" / "ironhand.example.com"
    assert webapp.source_directory == str(expected)
    assert webapp.wsgi_entry == "wsgi:application"
    assert "def application" in (expected / "wsgi.py").read_text()


def test_it_writes_an_audit_row_for_a_create(owner):
    actions.do_create_webapp("IronHand.example.com", actor=owner, origin=CLI)
    assert audit_actions() == [("webapp.create", "ironhand.example.com")]


def test_it_refuses_a_collision_after_canonicalisation_with_a_clear_message(owner, owner_app):
    other = make_user("ironfist")
    with pytest.raises(
        actions.ActionError, match=r"'IRONHAND.example.com.' \(as ironhand.example.com\)"
    ):
        actions.do_create_webapp("IRONHAND.example.com.", actor=other, origin=CLI)
    assert WebApp.objects.count() == 1


def test_it_refuses_a_unicode_spelling_of_a_taken_punycode_domain(owner, unicode_app):
    other = make_user("ironfist")
    with pytest.raises(actions.ActionError, match="already used") as info:
        actions.do_create_webapp("xn--bcher-kva.example", actor=other, origin=CLI)
    assert info.value.field == "domain_name"


def test_it_reserves_the_users_apps_subdomain_for_that_user(owner, outsider):
    with pytest.raises(actions.ActionError, match=r"yours is mallory\.apps\.localhost"):
        actions.do_create_webapp("IronHand.apps.localhost", actor=outsider, origin=CLI)
    webapp = actions.do_create_webapp("IronHand.apps.localhost", actor=owner, origin=CLI)
    assert webapp.domain == "ironhand.apps.localhost"


def test_it_refuses_a_source_directory_outside_the_home(owner, outsider):
    (settings.HOME_ROOT / "mallory").mkdir(parents=True)
    with pytest.raises(actions.ActionError, match="outside your home") as info:
        actions.do_create_webapp(
            "IronHand.example.com",
            actor=owner,
            origin=CLI,
            source_directory=str(settings.HOME_ROOT / "mallory"),
        )
    assert info.value.field == "source_directory"
    assert not WebApp.objects.exists()


def test_it_refuses_a_virtualenv_outside_the_home(owner):
    with pytest.raises(actions.ActionError, match="outside your home") as info:
        actions.do_create_webapp(
            "IronHand.example.com", actor=owner, origin=CLI, virtualenv_path="/usr"
        )
    assert info.value.field == "virtualenv_path"


@pytest.mark.parametrize(("typed", "stored"), [("3.11", "3.11"), ("python310", "3.10"), ("", "")])
def test_it_stores_the_python_version(owner, typed, stored):
    webapp = actions.do_create_webapp(
        "IronHand.example.com", actor=owner, origin=CLI, python_version=typed
    )
    assert webapp.python_version == stored


def test_it_updates_only_what_it_was_given_and_audits_the_change(owner, owner_app):
    actions.do_update_webapp(owner_app, {"wsgi_entry": "site.wsgi:app"}, actor=owner, origin=CLI)
    owner_app.refresh_from_db()
    assert owner_app.wsgi_entry == "site.wsgi:app"
    event = AuditEvent.objects.get(action="webapp.update")
    assert event.detail == {"changed": {"wsgi_entry": ["wsgi:application", "site.wsgi:app"]}}


def test_it_refuses_to_change_the_domain(owner, owner_app):
    with pytest.raises(actions.ActionError, match="cannot change domain"):
        actions.do_update_webapp(owner_app, {"domain": "other.example"}, actor=owner, origin=CLI)


def test_it_deletes_an_app_but_keeps_its_files(owner, owner_app):
    source = owner_app.source_directory
    actions.do_delete_webapp(owner_app, actor=owner, origin=CLI)
    assert not WebApp.objects.exists()
    assert (settings.HOME_ROOT / "ironhand" / "ironhand.example.com" / "wsgi.py").exists()
    assert source.endswith("ironhand.example.com")
    assert ("webapp.delete", "ironhand.example.com") in audit_actions()


def test_it_records_a_reload_even_when_no_node_serves_the_app(owner, owner_app):
    event = actions.do_reload_webapp(owner_app, actor=owner, origin=CLI)
    assert not event.ok
    assert event.message == "no node serves ironhand.example.com here"
    assert ReloadEvent.objects.get() == event
    assert audit_actions("failed") == [("webapp.reload", "ironhand.example.com")]


def test_it_records_the_backend_and_duration_of_a_reload(settings, owner, owner_app):
    settings.WEBAPPS_RELOADER = "tests.webapps.support.OkReloader"
    event = actions.do_reload_webapp(owner_app, actor=owner, origin=CLI)
    assert (event.ok, event.backend, event.duration_ms) == (True, "b7", 12)
    assert event.summary() == "Reloaded on b7 in 12 ms"


def test_it_keeps_the_log_tail_of_a_failed_reload(settings, owner, owner_app):
    settings.WEBAPPS_RELOADER = "tests.webapps.support.BrokenAppReloader"
    event = actions.do_reload_webapp(owner_app, actor=owner, origin=CLI)
    assert "SyntaxError" in ReloadEvent.objects.get(pk=event.pk).log_tail


def test_it_turns_an_unreachable_node_into_a_failed_reload(settings, owner, owner_app):
    settings.WEBAPPS_RELOADER = "tests.webapps.support.UnreachableReloader"
    settings.NODE_NAME = "b3"
    event = actions.do_reload_webapp(owner_app, actor=owner, origin=CLI)
    assert (event.ok, event.backend) == (False, "b3")
    assert "refused" in event.message


def test_it_throttles_reloads_per_user(settings, owner, owner_app, outsider):
    settings.RELOAD_THROTTLE_PER_MINUTE = 2
    actions.do_reload_webapp(owner_app, actor=owner, origin=CLI)
    actions.do_reload_webapp(owner_app, actor=owner, origin=CLI)
    with pytest.raises(actions.ReloadThrottled) as info:
        actions.do_reload_webapp(owner_app, actor=owner, origin=CLI)
    assert 1 <= info.value.retry_after <= 60
    assert ReloadEvent.objects.count() == 2
