"""``manage.py runnode`` as a real process: HTTP through the proxy engine to real gunicorns."""

from __future__ import annotations

import re

import pytest
from django.core.management import CommandError, call_command

from tests.webapps.node.support import add_apps, answer_app, write_app


@pytest.fixture
def one_node(platform):
    source = write_app(platform.home, "Alice", "alice.apps.localhost", answer_app("hello alice"))
    add_apps(platform.env, {"Alice": [("alice.apps.localhost", str(source))]})
    return platform.node("b1", "--no-routes")


def test_it_serves_an_app_by_its_host_in_any_spelling(one_node):
    status, headers, body = one_node.request("Alice.Apps.Localhost.:9001")
    assert (status, body) == (200, "hello alice")
    assert headers["X-Backend"] == "b1"


def test_an_invalid_host_is_400_and_starts_nothing(one_node):
    status, headers, _ = one_node.request("bad_host%name")
    assert status == 400 and headers["X-Backend"] == "b1"
    assert one_node.status() == []


def test_an_unknown_domain_is_404_and_starts_nothing(one_node):
    status, _, body = one_node.request("nobody.apps.localhost")
    assert status == 404 and "nobody.apps.localhost" in body
    assert one_node.status() == []


def test_sigterm_stops_every_app_process(one_node):
    assert one_node.request("alice.apps.localhost")[0] == 200
    pids = [a["pid"] for a in one_node.status()]
    assert pids
    assert one_node.stop() == 0
    assert one_node.kill_leftovers() == []


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["--name", "b1", "--listen", "nonsense"], "argument --listen: address 'nonsense' is not"),
        (["--name", "b1", "--listen", "127.0.0.1:0"], "'127.0.0.1:0' has no port from 1 to"),
        (["--name", "b1", "--listen", "::1:9001"], "'::1:9001' has an IPv6 host without brackets"),
        (["--name", "b1-"], "argument --name: 'b1-' is not a backend name"),
        (["--name", "B1"], "argument --name: 'B1' is not a backend name"),
        (["--name", "b1", "--max-running-apps", "-1"], "--max-running-apps: '-1' is negative"),
        (["--name", "b1", "--max-running-apps", "x"], "--max-running-apps: 'x' is not a whole"),
    ],
)
def test_a_bad_option_is_refused_naming_the_value(args, problem):
    with pytest.raises(CommandError, match=re.escape(problem)):
        call_command("runnode", *args)


def test_a_node_python_that_does_not_run_stops_the_node_naming_it(settings):
    settings.NODE_PYTHONS = "3.12=/nonexistent/bin/python3.12"
    problem = (
        "NODE_PYTHONS: the interpreter of Python 3.12, /nonexistent/bin/python3.12, does not run"
    )
    with pytest.raises(CommandError, match=re.escape(problem)):
        call_command("runnode", "--name", "b1")
