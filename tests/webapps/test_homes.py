import os

import pytest

from webapps.homes import (
    PathError,
    clean_wsgi_entry,
    default_source_directory,
    resolve_inside_home,
    write_starter_app,
)
from webapps.node.spec import InvalidWsgiEntry, check_wsgi_entry


@pytest.fixture
def root(tmp_path):
    (tmp_path / "ironhand" / "site").mkdir(parents=True)
    (tmp_path / "mallory" / "secret").mkdir(parents=True)
    return tmp_path


def test_it_resolves_a_relative_path_inside_the_lower_cased_home(root):
    assert resolve_inside_home(root, "IronHand", "site", "dir") == root / "ironhand" / "site"


def test_it_accepts_an_absolute_path_inside_the_home(root):
    path = str(root / "ironhand" / "site")
    assert resolve_inside_home(root, "IronHand", path, "dir") == root / "ironhand" / "site"


@pytest.mark.parametrize("raw", ["../mallory/secret", "/etc", "site/../../mallory"])
def test_it_refuses_a_path_outside_the_home(root, raw):
    with pytest.raises(PathError, match="outside your home"):
        resolve_inside_home(root, "IronHand", raw, "source directory")


def test_it_follows_a_symlink_that_leads_out_of_the_home(root):
    os.symlink(root / "mallory" / "secret", root / "ironhand" / "link")
    with pytest.raises(PathError, match="outside your home"):
        resolve_inside_home(root, "IronHand", "link", "source directory")


def test_it_follows_a_symlink_that_stays_inside_the_home(root):
    os.symlink(root / "ironhand" / "site", root / "ironhand" / "current")
    assert resolve_inside_home(root, "IronHand", "current", "dir") == root / "ironhand" / "site"


def test_it_refuses_a_path_with_a_nul(root):
    with pytest.raises(PathError, match="NUL"):
        resolve_inside_home(root, "IronHand", "si\x00te", "dir")


def test_it_defaults_to_the_domain_under_the_home(root):
    path = default_source_directory(root, "IronHand", "ironhand.example.com")
    assert path == root / "ironhand" / "ironhand.example.com"


def test_it_writes_a_starter_app_that_answers(tmp_path):
    assert write_starter_app(tmp_path, "app") is True
    namespace: dict = {}
    exec((tmp_path / "app" / "wsgi.py").read_text(), namespace)
    seen = []
    body = namespace["application"]({}, lambda status, headers: seen.append(status))
    assert seen == ["200 OK"]
    assert b"Reload" in b"".join(body)


def test_it_keeps_an_existing_wsgi_file(tmp_path):
    (tmp_path / "wsgi.py").write_text("mine")
    assert write_starter_app(tmp_path.parent, tmp_path.name) is False
    assert (tmp_path / "wsgi.py").read_text() == "mine"


@pytest.mark.parametrize("raw", ["wsgi:application", "mysite.wsgi:app", "pkg.mod:factory"])
def test_it_accepts_a_wsgi_entry(raw):
    assert clean_wsgi_entry(raw) == raw


def test_it_strips_the_spaces_around_a_wsgi_entry():
    assert clean_wsgi_entry("  mysite.wsgi:app\n") == "mysite.wsgi:app"


@pytest.mark.parametrize("raw", ["wsgi", "wsgi:", ":app", "os; rm:x", "a:b:c", 5])
def test_it_refuses_a_malformed_wsgi_entry(raw):
    with pytest.raises(PathError, match="module:callable"):
        clean_wsgi_entry(raw)


# The node starts ``module:name`` (gunicorn looks one name up in the module); these were once
# saved by the panel and then could never start.
@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("wsgi:app.server", "the callable 'app.server' must be one name, without dots"),
        ("pkg.mod:factory.app", "the callable 'factory.app' must be one name, without dots"),
        ("wsgi:appé", "must be ASCII letters, digits and underscores"),
        ("wsgi:class", "the callable 'class' is a Python keyword"),
    ],
)
def test_it_refuses_an_entry_the_node_cannot_start_and_says_why(raw, problem):
    with pytest.raises(PathError) as caught:
        clean_wsgi_entry(raw)
    message = str(caught.value)
    assert repr(raw) in message and problem in message
    assert "module:callable, for example wsgi:application" in message


def test_the_node_refuses_them_too():
    for raw in ("wsgi:app.server", "wsgi:appé"):
        with pytest.raises(InvalidWsgiEntry):
            check_wsgi_entry(raw)
