"""The panel's reload (API and Web tab) through its reloader to a real node core and real
gunicorn processes: what it answers, what it records, and that the code served is the code on
disk. Database tests: they run on SQLite and on PostgreSQL."""

from __future__ import annotations

import re
import textwrap
import time
from pathlib import Path

import pytest

from tests.conftest import CLI
from tests.webapps.node.support import (
    domain_served_by,
    every_worker_ready,
    get_unix,
    get_unix_response,
    table_of,
)
from tests.webapps.node.test_fresh_code import (
    MODULE_APP,
    plain_python_imports,
    same_second_same_size_edit,
    set_version,
)
from tests.webapps.test_browser import chromium, reload_seen_in_browser  # noqa: F401 (a fixture)
from webapps import actions
from webapps.models import ReloadEvent
from webapps.node.spec import GENERATION_HEADER, AppSpec

pytestmark = pytest.mark.django_db

ROUNDS = 8


@pytest.fixture
def on_node(settings, node_control, home_root):
    """The panel as the node b7 runs it: ``NodeReloader`` over b7's control socket."""
    sup, specs, path, tables = node_control
    settings.HOME_ROOT = home_root.resolve()
    settings.WEBAPPS_RELOADER = "webapps.reload.NodeReloader"
    settings.NODE_NAME = "b7"
    settings.NODE_CONTROL_SOCKET = str(path)
    return sup, specs, tables


def hosted(specs, webapp) -> AppSpec:
    """What runnode's lookup gives the node for ``webapp`` (the dict stands in for the table)."""
    spec = AppSpec(
        name=webapp.domain, source_directory=webapp.source_directory, owner=webapp.owner.username
    )
    specs[webapp.domain] = spec
    return spec


@pytest.fixture
def module_app(owner):
    webapp = actions.do_create_webapp("IronHand.example.com", actor=owner, origin=CLI)
    source = Path(webapp.source_directory)
    (source / "wsgi.py").write_text(textwrap.dedent(MODULE_APP))
    set_version(source, "v000", time.time())
    return webapp, source


URL = "/api/v0/user/IronHand/webapps/ironhand.example.com/reload/"


def test_a_reload_through_the_api_runs_same_second_same_size_edits(
    on_node, module_app, owner_api, loop_thread
):
    sup, specs, _ = on_node
    webapp, source = module_app
    spec = hosted(specs, webapp)
    sock = loop_thread.run(sup.socket_for(spec))
    assert get_unix(sock)[1] == "v000"
    # A start answers from its first worker; one still importing would write its own cache
    # entry for the edit below, and the trap would not be set.
    every_worker_ready(lambda: next(a for a in sup.status() if a["name"] == spec.name))
    for n in range(1, ROUNDS + 1):
        old, new = f"v{n - 1:03d}", f"v{n:03d}"
        same_second_same_size_edit(source, old, new)
        assert plain_python_imports(source) == old
        body = owner_api.post(URL).json()
        assert (body["status"], body["result"], body["generation"]) == ("OK", "reloaded", n + 1)
        code, headers, text = get_unix_response(sock)
        assert (code, text, headers[GENERATION_HEADER]) == (200, new, str(n + 1)), f"round {n}"
    assert ReloadEvent.objects.filter(outcome="ok").count() == ROUNDS


def test_a_cold_start_after_an_api_reload_runs_same_second_same_size_edits(
    on_node, module_app, owner_api, loop_thread
):
    sup, specs, _ = on_node
    webapp, source = module_app
    spec = hosted(specs, webapp)
    assert get_unix(loop_thread.run(sup.socket_for(spec)))[1] == "v000"
    for n in range(1, ROUNDS + 1):
        old, new = f"v{n - 1:03d}", f"v{n:03d}"
        loop_thread.run(sup.stop(spec.name, "a cold start follows"))
        same_second_same_size_edit(source, old, new)
        assert owner_api.post(URL).json()["result"] == "not_running"
        assert get_unix(loop_thread.run(sup.socket_for(spec)))[1] == new, f"round {n}"


def test_the_api_says_a_reload_reloaded_with_workers_and_generation(
    on_node, module_app, owner_api, loop_thread
):
    sup, specs, _ = on_node
    webapp, _ = module_app
    loop_thread.run(sup.socket_for(hosted(specs, webapp)))
    response = owner_api.post(URL)
    body = response.json()
    assert response.status_code == 200
    assert (body["result"], body["backend"], body["workers"], body["generation"]) == (
        "reloaded",
        "b7",
        2,
        2,
    )
    assert re.fullmatch(r"Reloaded on b7 in \d+ ms \(2 workers, generation 2\)", body["summary"])
    event = ReloadEvent.objects.get()
    assert (event.outcome, event.workers, event.generation, event.misrouted) == ("ok", 2, 2, False)
    assert event.summary() == body["summary"]
    last = owner_api.get("/api/v0/user/IronHand/webapps/ironhand.example.com/").json()
    assert last["last_reload"]["summary"] == body["summary"]


def test_the_api_says_an_app_never_requested_is_not_running_and_gives_no_duration(
    on_node, module_app, owner_api
):
    _, specs, _ = on_node
    hosted(specs, module_app[0])
    response = owner_api.post(URL)
    body = response.json()
    assert response.status_code == 200
    assert (body["status"], body["result"], body["duration_ms"], body["generation"]) == (
        "OK",
        "not_running",
        None,
        None,
    )
    assert body["summary"] == "Not running on b7: the next request starts it with this code"
    event = ReloadEvent.objects.get()
    assert (event.outcome, event.duration_ms) == ("not_running", None)
    assert " 0 ms" not in event.summary()


def test_the_api_says_which_exception_a_failed_reload_raised(
    on_node, module_app, owner_api, loop_thread
):
    sup, specs, _ = on_node
    webapp, source = module_app
    spec = hosted(specs, webapp)
    loop_thread.run(sup.socket_for(spec))
    every_worker_ready(lambda: next(a for a in sup.status() if a["name"] == spec.name))
    (source / "appversion.py").write_text("import nonexistent_module_xyz\n")
    response = owner_api.post(URL)
    body = response.json()
    assert (response.status_code, body["status"], body["result"]) == (502, "ERROR", "failed")
    assert body["summary"].startswith(
        "Reload failed on b7: ModuleNotFoundError: No module named 'nonexistent_module_xyz'"
    )
    assert "Traceback" in body["log_tail"]


def test_the_web_tab_shows_each_outcome_in_the_nodes_words(
    on_node, module_app, owner_web, loop_thread
):
    sup, specs, _ = on_node
    webapp, source = module_app
    spec = hosted(specs, webapp)
    reload_url = "/user/IronHand/webapps/ironhand.example.com/reload/"
    detail_url = "/user/IronHand/webapps/ironhand.example.com/"

    def reload() -> dict:
        return owner_web.post(reload_url, HTTP_ACCEPT="application/json").json()

    assert reload()["summary"] == "Not running on b7: the next request starts it with this code"
    loop_thread.run(sup.socket_for(spec))
    assert re.fullmatch(
        r"Reloaded on b7 in \d+ ms \(2 workers, generation 2\)", reload()["summary"]
    )
    every_worker_ready(lambda: next(a for a in sup.status() if a["name"] == spec.name))
    (source / "appversion.py").write_text("import nonexistent_module_xyz\n")
    failed = reload()
    assert failed["ok"] is False
    assert failed["summary"].startswith("Reload failed on b7: ModuleNotFoundError")
    history = owner_web.get(detail_url).content.decode()
    assert "Not running on b7: the next request starts it with this code" in history
    assert "(2 workers, generation 2)" in history
    assert "Reload failed on b7: ModuleNotFoundError" in history


def test_a_reload_the_table_gives_another_node_is_flagged_warned_and_done(
    on_node, owner, owner_api, loop_thread, peer, home_root
):
    sup, specs, tables = on_node
    tables[0] = table_of(b7="127.0.0.1:1", b8=peer)
    domain = domain_served_by(tables[0], "b8")
    webapp = actions.do_create_webapp(domain, actor=owner, origin=CLI)
    sock = loop_thread.run(sup.socket_for(hosted(specs, webapp)))

    response = owner_api.post(f"/api/v0/user/IronHand/webapps/{domain}/reload/")

    body = response.json()
    assert (response.status_code, body["result"], body["misrouted"]) == (200, "reloaded", True)
    assert "sends this app's traffic to b8, not to b7" in body["warning"]
    assert body["summary"].endswith(body["warning"])
    event = ReloadEvent.objects.get()
    assert (event.misrouted, event.traffic_backend) == (True, "b8")
    assert get_unix(sock)[0] == 200


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_web_tab_in_a_browser_says_an_app_never_requested_is_not_running(
    on_node,
    settings,
    live_server,
    chromium,  # noqa: F811 (the fixture imported above)
    client,
    owner,
    owner_app,
):
    _, specs, _ = on_node
    hosted(specs, owner_app)
    seen = reload_seen_in_browser(
        settings, live_server, chromium, client, owner, settings.WEBAPPS_RELOADER
    )
    assert seen == {
        "outcome": "Not running on b7: the next request starts it with this code",
        "marker": "same page",
        "log_tail": None,
    }
    assert owner_app.reloads.get().outcome == "not_running"
