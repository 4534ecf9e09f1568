"""The supervisor launching apps isolated (sandbox per app, the panel as its own uid) and the
gunicorn settings every app gets, with real processes."""

from __future__ import annotations

import json
import socket
import stat
from pathlib import Path

import pytest

from tests.support import wait_until
from tests.webapps.node import harness
from tests.webapps.node.support import (
    answer_app,
    every_worker_ready,
    get_unix,
    give_home,
    write_app,
)
from webapps.node import launching
from webapps.node.sandbox import Isolation, IsolationUnavailable
from webapps.node.spec import AppSpec
from webapps.node.supervisor import AppUnavailable

UID = 1_600_001
ENVIRON = """
    import json, os
    def application(environ, start_response):
        keys = ("SCRIPT_NAME", "PATH_INFO", "wsgi.url_scheme", "HTTP_X_KEPT")
        body = json.dumps({k: environ.get(k) for k in keys} | {"uid": os.getuid()}).encode()
        start_response("200 OK", [("Content-Type", "application/json"),
                                  ("Content-Length", str(len(body)))])
        return [body]
"""


def raw_get(sock: str, head: bytes) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(sock)
        s.sendall(head)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data.split(b"\r\n\r\n", 1)[1]


def test_gunicorn_ignores_forwarded_path_fields_even_from_its_unix_socket_peer(
    supervisor_factory, home_root, loop_thread
):
    sup = supervisor_factory()
    source = write_app(home_root, "ann", "env.apps.test", ENVIRON)
    sock = loop_thread.run(sup.socket_for(AppSpec("env.apps.test", str(source), owner="ann")))
    body = raw_get(
        sock,
        b"GET /real HTTP/1.1\r\nHost: a\r\nConnection: close\r\nSCRIPT_NAME: /evil\r\n"
        b"PATH_INFO: /evil\r\nX-Forwarded-Ssl: on\r\nX-Forwarded-Protocol: ssl\r\n"
        b"X-Kept: 1\r\n\r\n",
    )
    seen = json.loads(body)
    assert (seen["SCRIPT_NAME"] or "", seen["PATH_INFO"]) == ("", "/real")
    assert seen["wsgi.url_scheme"] == "http" and seen["HTTP_X_KEPT"] == "1"


@pytest.fixture
def isolated_supervisor(supervisor_factory):
    iso = harness.need_isolation()
    isolated, lines = launching.prepare(
        "t9", apps_share_node_user=False, panel_uid=999_999, panel_gid=999_999, egress=False,
        detect=lambda: iso,
    )  # fmt: skip
    assert lines[0].startswith("isolation: on")
    return supervisor_factory(isolated=isolated, max_workers=2)


def test_it_runs_an_app_as_its_owners_uid_with_a_socket_only_the_owner_reaches(
    isolated_supervisor, home_root, loop_thread
):
    source = write_app(home_root, "ann", "iso.apps.test", ENVIRON)
    spec = AppSpec("iso.apps.test", str(source), owner="ann", uid=UID, gid=UID, workers=9)
    sock = loop_thread.run(isolated_supervisor.socket_for(spec))
    status, body = get_unix(sock, "/x")
    assert status == 200 and json.loads(body)["uid"] == UID
    directory = (home_root / "ann").stat()
    assert (directory.st_uid, stat.S_IMODE(directory.st_mode)) == (UID, 0o700)
    sock_dir = Path(sock).parent.stat()
    assert (sock_dir.st_uid, stat.S_IMODE(sock_dir.st_mode)) == (UID, 0o700)
    every_worker_ready(lambda: isolated_supervisor.status()[0], 2)  # held to the bound of 2
    (app,) = isolated_supervisor.status()
    workers = [
        p
        for p in harness.sandbox_pids(type("P", (), {"pid": app["pid"]}))
        if harness.uid_of(p) == UID
    ]
    assert len(workers) == 3  # gunicorn's master and 2 workers: 9 asked, held to the bound


def test_it_reloads_a_sandboxed_app_to_new_code(isolated_supervisor, home_root, loop_thread):
    source = write_app(home_root, "ann", "hup.apps.test", answer_app("v1"))
    give_home(home_root / "ann", UID)
    spec = AppSpec("hup.apps.test", str(source), owner="ann", uid=UID, gid=UID)
    sock = loop_thread.run(isolated_supervisor.socket_for(spec))
    assert get_unix(sock) == (200, "v1")
    write_app(home_root, "ann", "hup.apps.test", answer_app("v2"))
    outcome = loop_thread.run(isolated_supervisor.reload(spec))
    assert outcome.ok, outcome
    assert get_unix(sock) == (200, "v2")
    loop_thread.run(isolated_supervisor.stop("hup.apps.test", "test"))
    wait_until(lambda: isolated_supervisor.status()[0]["pid"] is None, 20)


def test_it_refuses_an_app_whose_owner_has_no_uid(isolated_supervisor, home_root, loop_thread):
    source = write_app(home_root, "ann", "nouid.apps.test", answer_app("v1"))
    with pytest.raises(AppUnavailable, match="has no uid and gid from the panel"):
        loop_thread.run(
            isolated_supervisor.socket_for(AppSpec("nouid.apps.test", str(source), owner="ann"))
        )


def test_it_refuses_an_app_that_would_run_as_the_panels_uid(
    isolated_supervisor, home_root, loop_thread
):
    source = write_app(home_root, "ann", "panel.apps.test", answer_app("v1"))
    spec = AppSpec("panel.apps.test", str(source), owner="ann", uid=999_999, gid=999_999)
    with pytest.raises(AppUnavailable, match="is the panel's"):
        loop_thread.run(isolated_supervisor.socket_for(spec))


def test_a_node_that_cannot_isolate_refuses_unless_told_apps_share_its_user():
    unavailable = Isolation(False, "the node does not run as root (uid 1000)")
    with pytest.raises(IsolationUnavailable, match="--apps-share-node-user"):
        launching.prepare(
            "b1", apps_share_node_user=False, panel_uid=1, panel_gid=1, detect=lambda: unavailable
        )
    isolated, lines = launching.prepare(
        "b1", apps_share_node_user=True, panel_uid=1, panel_gid=1, detect=lambda: unavailable
    )
    assert isolated is None
    assert lines == (
        "isolation: off (apps share the node's user (--apps-share-node-user): "
        "the node does not run as root (uid 1000))",
    )
