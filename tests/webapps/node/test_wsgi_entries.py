"""Every WSGI entry the panel accepts, the node can start.

The rule has one owner, ``webapps.node.spec.check_wsgi_entry``; the panel's validation
(``webapps.homes.clean_wsgi_entry``) goes through it. These tests hold the two together: a
property over the panel's accept set, checked against the node's spec and gunicorn's own reading
of an entry, and real starts of apps whose entries have different shapes.
"""

from __future__ import annotations

import ast
import textwrap

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tests.webapps.node.support import get_unix
from webapps.homes import PathError, clean_wsgi_entry
from webapps.node.spec import (
    AppSpec,
    SourceRefused,
    check_source,
    check_wsgi_entry,
    is_wsgi_entry,
)

# Entries built from names, mostly well-formed ASCII identifiers and sometimes one at the rule's
# edges (a keyword, a Unicode letter, a hyphen, a dot, nothing), joined by the right or a wrong
# separator; plus any text at all.
NAME = st.one_of(
    st.from_regex(r"\A[A-Za-z_][A-Za-z0-9_]{0,8}\Z"),
    st.from_regex(r"\A[A-Za-z_][A-Za-z0-9_]{0,8}\Z"),
    st.sampled_from(["class", "None", "True", "appé", "ǅx", "a-b", "9x", "app.server", "", " "]),
)
STRUCTURED = st.builds(
    lambda before, modules, sep, name, after: f"{before}{'.'.join(modules)}{sep}{name}{after}",
    st.sampled_from(["", "", " ", "-", "\n"]),
    st.lists(NAME, min_size=1, max_size=4),
    st.sampled_from([":", ":", ":", "", "::", "."]),
    NAME,
    st.sampled_from(["", "", " ", "\n", ":x", "()"]),
)
ENTRIES = st.one_of(STRUCTURED, STRUCTURED, STRUCTURED, st.text(max_size=40))


def panel_accepts(raw: object) -> str | None:
    try:
        return clean_wsgi_entry(raw)
    except PathError:
        return None


def gunicorn_can_read(entry: str) -> bool:
    """gunicorn's reading of ``module:name`` (``gunicorn.util.import_app``), without importing."""
    module, _, name = entry.partition(":")
    try:
        expression = ast.parse(name, mode="eval").body
    except SyntaxError:
        return False
    return isinstance(expression, ast.Name) and all(
        part.isidentifier() and part.isascii() for part in module.split(".")
    )


@pytest.fixture(scope="module")
def app_dir(tmp_path_factory):
    home_root = tmp_path_factory.mktemp("homes")
    source = home_root / "alice" / "site"
    source.mkdir(parents=True)
    return home_root, source


@settings(max_examples=300)
@given(raw=ENTRIES)
@example(raw="wsgi:app.server")
@example(raw="wsgi:appé")
@example(raw=" wsgi:application ")
@example(raw="wsgi:class")
def test_every_entry_the_panel_accepts_the_node_accepts(app_dir, raw):
    entry = panel_accepts(raw)
    if entry is None:
        return
    home_root, source = app_dir
    assert is_wsgi_entry(entry)
    assert check_wsgi_entry(entry) == entry
    assert gunicorn_can_read(entry)
    spec = AppSpec(name="site", source_directory=str(source), owner="alice", wsgi_entry=entry)
    assert check_source(spec, home_root) == source.resolve()


@given(raw=ENTRIES)
def test_the_panel_accepts_what_the_node_accepts_once_stripped(raw):
    # One rule: the panel adds nothing but stripping the spaces around the entry.
    stripped = raw.strip()
    assert (panel_accepts(raw) is not None) == is_wsgi_entry(stripped)


@pytest.mark.parametrize("entry", ["wsgi", "wsgi:app.server", "-b:app", "wsgi:application()"])
def test_the_node_refuses_to_start_an_entry_outside_the_rule(app_dir, entry):
    home_root, source = app_dir
    spec = AppSpec(name="site", source_directory=str(source), owner="alice", wsgi_entry=entry)
    with pytest.raises(
        SourceRefused, match=r"refused to start: the WSGI entry .* cannot be started"
    ):
        check_source(spec, home_root)


def write_tree(root, files: dict[str, str]) -> None:
    for name, body in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(body))


def answering(name: str, text: str) -> str:
    return f"""
        def {name}(environ, start_response):
            body = {text!r}.encode()
            start_response("200 OK", [("Content-Type", "text/plain"),
                                      ("Content-Length", str(len(body)))])
            return [body]
    """


@pytest.mark.parametrize(
    ("entry", "files"),
    [
        ("wsgi:application", {"wsgi.py": answering("application", "wsgi:application")}),
        ("server:app", {"server.py": answering("app", "server:app")}),
        (
            "mysite.wsgi:app",
            {"mysite/__init__.py": "", "mysite/wsgi.py": answering("app", "mysite.wsgi:app")},
        ),
        (
            "company.web.entry:wsgi_app",
            {
                "company/__init__.py": "",
                "company/web/__init__.py": "",
                "company/web/entry.py": answering("wsgi_app", "company.web.entry:wsgi_app"),
            },
        ),
    ],
)
def test_an_entry_the_panel_accepts_starts_on_the_node(
    supervisor_factory, home_root, loop_thread, entry, files
):
    saved = clean_wsgi_entry(f" {entry} ")  # as the panel saves it
    source = home_root / "alice" / "entry.apps.test"
    write_tree(source, files)
    spec = AppSpec(
        name="entry.apps.test", source_directory=str(source), owner="alice", wsgi_entry=saved
    )
    sock = loop_thread.run(supervisor_factory().socket_for(spec))
    assert get_unix(sock) == (200, entry)
