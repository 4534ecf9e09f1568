"""Starting from a template: "Add a web app" with wsgi, flask or django writes a project into the
owner's home, and after the first reload the site answers from a real gunicorn.

The first tests run the panel in this process with the node core of ``node_control`` (real
supervisor, real control socket); the last one goes through ``manage.py runnode`` as root,
where the panel runs as its own uid and the node writes into the home for it.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.webapps.node import harness
from tests.webapps.node.support import (
    PLATFORM_PACKAGES_DIR,
    add_apps,
    get_unix_response,
)
from webapps.management.commands.runnode import webapp_spec
from webapps.models import StaticFileMapping, WebApp
from webapps.node import pythons
from webapps.node.control import call

pytestmark = pytest.mark.django_db

LIST = "/api/v0/user/IronHand/webapps/"


@pytest.fixture
def on_node(settings, node_control, home_root):
    """The panel as node b7 runs it, with the platform's package set the node would make."""
    sup, specs, path, _ = node_control
    settings.HOME_ROOT = home_root.resolve()
    settings.WEBAPPS_RELOADER = "webapps.reload.NodeReloader"
    settings.NODE_NAME = "b7"
    settings.NODE_CONTROL_SOCKET = str(path)
    settings.PLATFORM_PACKAGES_DIR = PLATFORM_PACKAGES_DIR
    assert pythons.platform_packages(PLATFORM_PACKAGES_DIR, settings.PLATFORM_PACKAGES)
    sup.platform_packages = PLATFORM_PACKAGES_DIR
    return sup, specs


def create_and_reload(owner_api, specs, domain: str, **fields) -> dict:
    response = owner_api.post(LIST, {"domain_name": domain, **fields}, format="json")
    assert response.status_code == 201, response.json()
    specs[domain] = webapp_spec(domain)  # what runnode's lookup reads from the table
    reloaded = owner_api.post(f"{LIST}{domain}/reload/").json()
    assert reloaded["status"] == "OK", reloaded
    return response.json()


def serve(loop_thread, sup, specs, domain: str, path: str = "/") -> tuple[int, str]:
    sock = loop_thread.run(sup.socket_for(specs[domain]))
    status, _, body = get_unix_response(sock, path, host=domain)
    return status, body


def test_the_wsgi_template_answers_after_the_first_reload(on_node, owner_api, loop_thread):
    sup, specs = on_node
    body = create_and_reload(owner_api, specs, "plain.example.com", template="wsgi")
    assert (body["wsgi_entry"], body["virtualenv_path"]) == ("wsgi:application", "")
    status, text = serve(loop_thread, sup, specs, "plain.example.com")
    assert (status, text) == (
        200,
        "Hello from your new web app. Edit wsgi.py, then press Reload.\n",
    )


def test_the_flask_template_runs_flask_from_its_own_virtualenv(
    on_node, owner, owner_api, loop_thread, settings
):
    sup, specs = on_node
    body = create_and_reload(owner_api, specs, "flask.example.com", template="flask")
    home = Path(settings.HOME_ROOT) / "ironhand"
    venv = home / ".virtualenvs" / "flask.example.com"
    assert body["virtualenv_path"] == str(venv)
    assert (venv / "bin" / "python").is_symlink()
    if os.geteuid() == 0:  # written as the owner
        assert {
            p.lstat().st_uid
            for p in [venv, venv / "bin" / "python", home / "flask.example.com" / "flask_app.py"]
        } == {owner.uid}
    status, text = serve(loop_thread, sup, specs, "flask.example.com")
    assert (status, text) == (200, "Hello from Flask! Edit flask_app.py, then press Reload.\n")
    # The virtualenv is an ordinary one: its Python runs with its own prefix and finds Flask.
    probe = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import sys, flask; print(sys.prefix)"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert probe.stdout.strip() == str(venv)


def test_the_django_template_serves_its_project_with_a_static_mapping(
    on_node, owner_api, loop_thread, settings
):
    sup, specs = on_node
    body = create_and_reload(owner_api, specs, "django.example.com", template="django")
    source = Path(settings.HOME_ROOT) / "ironhand" / "django.example.com"
    assert body["wsgi_entry"] == "mysite.wsgi:application"
    (mapping,) = StaticFileMapping.objects.filter(webapp__domain="django.example.com")
    assert (mapping.url, mapping.path) == ("/static/", str(source / "static"))
    assert (source / "static").is_dir()
    status, text = serve(loop_thread, sup, specs, "django.example.com")
    assert (status, text) == (200, "Hello from Django! Edit mysite/urls.py, then press Reload.\n")
    # STATIC_ROOT is the mapped directory: collectstatic fills what the node serves.
    subprocess.run(
        [body["virtualenv_path"] + "/bin/python", "manage.py", "collectstatic", "--noinput", "-v0"],
        cwd=source, check=True, timeout=120, env={"PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert (source / "static" / "admin" / "css" / "base.css").is_file()


def test_the_web_tab_offers_the_templates_and_makes_the_one_chosen(on_node, owner_web, loop_thread):
    sup, specs = on_node
    page = owner_web.get("/user/IronHand/webapps/").content.decode()
    for value in ("wsgi", "flask", "django"):
        assert f'value="{value}"' in page
    response = owner_web.post(
        "/user/IronHand/webapps/", {"domain_name": "tab.example.com", "template": "flask"}
    )
    assert response.status_code == 302
    webapp = WebApp.objects.get(domain="tab.example.com")
    assert webapp.virtualenv_path.endswith("/.virtualenvs/tab.example.com")
    specs[webapp.domain] = webapp_spec(webapp.domain)
    assert serve(loop_thread, sup, specs, webapp.domain)[0] == 200


def test_an_unknown_template_is_refused_naming_those_there_are(owner_api):
    response = owner_api.post(
        LIST, {"domain_name": "x.example.com", "template": "rails"}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["template"] == ["template 'rails' is not one of wsgi, flask, django"]
    assert not WebApp.objects.exists()


def test_a_template_keeps_files_that_are_there_and_the_owners_virtualenv(
    on_node, owner_api, settings
):
    source = Path(settings.HOME_ROOT) / "ironhand" / "mine.example.com"
    source.mkdir(parents=True)
    (source / "flask_app.py").write_text("mine = True\n")
    response = owner_api.post(
        LIST,
        {"domain_name": "mine.example.com", "template": "flask", "virtualenv_path": "venvs/own"},
        format="json",
    )
    assert response.status_code == 201, response.json()
    assert (source / "flask_app.py").read_text() == "mine = True\n"
    assert (source / "wsgi.py").is_file()
    assert not (Path(settings.HOME_ROOT) / "ironhand" / ".virtualenvs").exists()
    assert response.json()["virtualenv_path"].endswith("/ironhand/venvs/own")


# --- through a real node, the panel as its own uid ------------------------------------------


def test_an_isolated_panel_makes_a_django_site_that_answers_with_its_static_files(platform):
    harness.need_isolation()
    tokens = add_apps(platform.env, {"carol": []})
    node = platform.node("b1", "--no-routes", "--no-egress")
    headers = {"Authorization": f"Token {tokens['carol']}", "Content-Type": "application/json"}
    code, _, body = node.request(
        "panel.localhost", "/api/v0/user/carol/webapps/", "POST", headers=headers,
        body=json.dumps({"domain_name": "carol-site.example", "template": "django"}),
    )  # fmt: skip
    assert code == 201, body
    created = json.loads(body)
    source = platform.home / "carol" / "carol-site.example"
    assert (source / "manage.py").stat().st_uid != 0  # written by the node, as carol
    answer = call(node.control_socket, {"op": "reload", "domain": "carol-site.example"}, 30)
    assert answer["status"] == "OK", answer
    code, _, text = node.request("carol-site.example")
    assert (code, text) == (200, "Hello from Django! Edit mysite/urls.py, then press Reload.\n")
    # The owner runs collectstatic (as they would in a console); the node serves the result.
    uid = (source / "manage.py").stat().st_uid
    subprocess.run(
        ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
         created["virtualenv_path"] + "/bin/python", "manage.py", "collectstatic", "--noinput",
         "-v0"],
        cwd=source, check=True, timeout=120,
        env={"PATH": "/usr/bin:/bin", "HOME": str(platform.home / "carol")},
    )  # fmt: skip
    code, headers, css = node.request("carol-site.example", "/static/admin/css/base.css")
    assert code == 200 and headers["Content-Type"].startswith("text/css"), (code, headers)
    assert css == (source / "static" / "admin" / "css" / "base.css").read_text()
