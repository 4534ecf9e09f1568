"""The control socket: reloads and logs asked for by the panel, answered by a real node core."""

from __future__ import annotations

import json
import os
import re
import socket
import stat
import subprocess
import sys

import pytest

from tests.support import wait_until
from tests.webapps.node.support import (
    answer_app,
    domain_served_by,
    every_worker_ready,
    get_unix,
    table_of,
    write_app,
)
from webapps import node_client as client
from webapps.node.control import ControlError, ControlServer, call
from webapps.node.directory import AppDirectory
from webapps.node.node import Node
from webapps.node.spec import AppSpec


def add_app(specs, home_root, domain, text):
    source = write_app(home_root, "carol", domain, answer_app(text))
    specs[domain] = AppSpec(name=domain, source_directory=str(source), owner="carol")
    return specs[domain]


def test_it_reloads_an_app_named_in_any_spelling(node_control, home_root, loop_thread):
    sup, specs, path, _ = node_control
    spec = add_app(specs, home_root, "shop.apps.test", "v1")
    sock = loop_thread.run(sup.socket_for(spec))
    add_app(specs, home_root, "shop.apps.test", "v2")
    answer = client.reload("Shop.Apps.Test.", socket_path=str(path))
    assert answer["status"] == "OK" and answer["backend"] == "b7"
    assert isinstance(answer["duration_ms"], int)
    assert get_unix(sock)[1] == "v2"


def test_a_reload_with_broken_code_answers_error_with_the_traceback(
    node_control, home_root, loop_thread
):
    sup, specs, path, _ = node_control
    spec = add_app(specs, home_root, "broken.apps.test", "v1")
    loop_thread.run(sup.socket_for(spec))
    every_worker_ready(lambda: sup.status()[0], spec.workers)
    write_app(home_root, "carol", "broken.apps.test", "import nonexistent_module_xyz\n")
    answer = client.reload("broken.apps.test", socket_path=str(path))
    assert answer["status"] == "ERROR"
    assert "nonexistent_module_xyz" in answer["log_tail"]


def test_a_reload_of_an_unknown_app_is_an_error(node_control):
    _, _, path, _ = node_control
    answer = client.reload("nobody.apps.test", socket_path=str(path))
    assert answer["status"] == "ERROR" and "nobody.apps.test" in answer["message"]


def test_it_serves_the_last_lines_of_each_log(node_control, home_root, loop_thread):
    sup, specs, path, _ = node_control
    spec = add_app(specs, home_root, "logged.apps.test", "hi")
    sock = loop_thread.run(sup.socket_for(spec))
    get_unix(sock, "/visible-in-the-access-log")
    # gunicorn writes the access line after the response; the node copies it a moment later
    logs = wait_until(
        lambda: _with_access(client.app_logs("LOGGED.apps.test", lines=20, socket_path=str(path))),
        what="the access line",
    )
    assert set(logs) == {"access", "error", "server"}
    assert "/visible-in-the-access-log" in logs["access"]
    assert "Booting worker" in logs["error"]
    assert "started gunicorn" in logs["server"]


def _with_access(logs):
    return logs if logs["access"] else None


@pytest.mark.parametrize(
    ("request_doc", "problem"),
    [
        ({"op": "explode"}, "unknown op"),
        ({"op": "reload"}, "'domain' must be a string"),
        ({"op": "reload", "domain": "bad host/x"}, "bad request"),
        ({"op": "logs", "domain": "a.test", "lines": 10**6}, "'lines' must be"),
    ],
)
def test_it_refuses_bad_requests_precisely(node_control, request_doc, problem):
    _, _, path, _ = node_control
    answer = call(path, request_doc, timeout=5)
    assert answer["status"] == "ERROR" and problem in answer["message"]


def test_it_refuses_a_request_that_is_not_json(node_control):
    _, _, path, _ = node_control
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(5)
        sock.connect(str(path))
        sock.sendall(b"reload everything please\n")
        answer = json.loads(sock.makefile("rb").readline())
    assert answer["status"] == "ERROR" and "bad request" in answer["message"]


def test_only_the_node_user_may_use_the_socket(node_control):
    _, _, path, _ = node_control
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_missing_node_is_a_control_error(short_tmp):
    with pytest.raises(ControlError, match="cannot reach"):
        call(short_tmp / "nobody-here.sock", {"op": "status"}, timeout=2)


def test_another_nodes_logs_are_read_from_its_log_directory(settings, tmp_path):
    settings.VAR_DIR = tmp_path
    logs = tmp_path / "log" / "b2"
    logs.mkdir(parents=True)
    (logs / "shop.apps.test.error.log").write_text("first\nTraceback: boom\n")
    got = client.app_logs("SHOP.apps.test", lines=1, backend="b2")
    assert got == {"access": "", "error": "Traceback: boom", "server": ""}


def test_a_node_name_cannot_point_outside_the_log_root(settings, tmp_path):
    settings.VAR_DIR = tmp_path
    with pytest.raises(ValueError, match="not a node name"):
        client.app_logs("shop.apps.test", backend="../../etc")


PEER = """
import json, socket, sys
with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
    s.settimeout(10)
    s.connect(sys.argv[1])
    s.sendall(json.dumps({"op": sys.argv[2], "domain": "shop.apps.test"}).encode() + b"\\n")
    print(s.makefile().readline())
"""


def _searchable_python() -> None:
    """Let another uid run this interpreter (as runnode does for the panel's uid)."""
    from pathlib import Path

    from webapps.node.sandbox import python_paths

    for directory in python_paths(sys.executable):
        for parent in (Path(directory), *Path(directory).parents):
            parent.chmod(parent.stat().st_mode | 0o001)


def _ask_as(uid: int, path, op: str) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", PEER, str(path), op],
        user=uid, group=uid, extra_groups=[], capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize("op", ["status", "reload", "logs"])
def test_it_refuses_a_client_of_another_uid_by_its_peer_credentials(
    node_control, short_tmp, home_root, op
):
    if os.geteuid() != 0:
        pytest.skip("needs root to connect as another uid")
    sup, specs, path, _ = node_control
    add_app(specs, home_root, "shop.apps.test", "v1")
    _searchable_python()
    short_tmp.chmod(0o711)
    path.chmod(0o666)  # the file's mode would stop it first: this is about the credentials
    answer = _ask_as(54321, path, op)
    assert answer == {
        "status": "ERROR",
        "message": "permission denied: uid 54321 may not use this node's control socket",
    }
    assert sup.running() == []  # nothing was started or reloaded


def test_it_answers_the_panels_uid(supervisor_factory, short_tmp, loop_thread):
    if os.geteuid() != 0:
        pytest.skip("needs root to connect as another uid")
    sup = supervisor_factory()
    path = short_tmp / "panel-control.sock"

    async def build():
        directory = AppDirectory(system={}, lookup={}.get, cache_seconds=0)
        node = Node(name="b7", supervisor=sup, directory=directory)
        server = ControlServer(path, node.dispatch, allowed_uids=frozenset({54322}), group=54322)
        await server.start()
        return server

    server = loop_thread.run(build())
    try:
        _searchable_python()
        short_tmp.chmod(0o711)
        assert (path.stat().st_gid, stat.S_IMODE(path.stat().st_mode)) == (54322, 0o660)
        assert _ask_as(54322, path, "status")["status"] == "OK"
    finally:
        loop_thread.run(server.close())


def test_a_reload_says_what_it_did_and_names_the_new_generation(
    node_control, home_root, loop_thread
):
    sup, specs, path, _ = node_control
    spec = add_app(specs, home_root, "told.apps.test", "v1")
    loop_thread.run(sup.socket_for(spec))
    answer = client.reload("told.apps.test", socket_path=str(path))
    assert (answer["status"], answer["result"], answer["generation"], answer["workers"]) == (
        "OK",
        "reloaded",
        2,
        2,
    )
    assert re.fullmatch(r"Reloaded on b7 in \d+ ms \(2 workers, generation 2\)", answer["summary"])
    assert answer["misrouted"] is False and answer["warning"] == ""


def test_a_reload_of_an_app_not_running_here_says_so_without_a_duration(node_control, home_root):
    _, specs, path, _ = node_control
    add_app(specs, home_root, "never.apps.test", "v1")
    answer = client.reload("never.apps.test", socket_path=str(path))
    assert (answer["status"], answer["result"], answer["duration_ms"]) == (
        "OK",
        "not_running",
        None,
    )
    assert answer["summary"] == "Not running on b7: the next request starts it with this code"


def test_a_failed_reload_names_the_exception_in_its_summary(node_control, home_root, loop_thread):
    sup, specs, path, _ = node_control
    spec = add_app(specs, home_root, "fails.apps.test", "v1")
    loop_thread.run(sup.socket_for(spec))
    every_worker_ready(lambda: sup.status()[0], spec.workers)
    write_app(home_root, "carol", "fails.apps.test", "import nonexistent_module_xyz\n")
    answer = client.reload("fails.apps.test", socket_path=str(path))
    assert (answer["status"], answer["result"]) == ("ERROR", "failed")
    assert answer["summary"].startswith(
        "Reload failed on b7: ModuleNotFoundError: No module named 'nonexistent_module_xyz'"
    )


def test_a_reload_for_an_app_the_table_gives_another_node_is_counted_flagged_and_done(
    node_control, home_root, loop_thread, peer
):
    sup, specs, path, tables = node_control
    tables[0] = table_of(b7="127.0.0.1:1", b8=peer)
    domain = domain_served_by(tables[0], "b8")
    spec = add_app(specs, home_root, domain, "v1")
    sock = loop_thread.run(sup.socket_for(spec))
    add_app(specs, home_root, domain, "v2")

    answer = client.reload(domain, socket_path=str(path))

    assert (answer["status"], answer["result"]) == ("OK", "reloaded")  # carried out anyway
    assert (answer["misrouted"], answer["traffic_backend"]) == (True, "b8")
    assert "sends this app's traffic to b8, not to b7" in answer["warning"]
    assert answer["warning"] in answer["summary"]
    assert get_unix(sock)[1] == "v2"
    status = call(path, {"op": "status"}, timeout=5)
    assert status["reloads"]["misrouted"] == 1 and status["reloads"]["reloaded"] == 1
    metrics = call(path, {"op": "metrics"}, timeout=5)["metrics"]
    assert 'hosting_node_misrouted_reloads_total{node="b7"} 1' in metrics.splitlines()


def test_a_reload_that_follows_a_fallback_past_a_node_that_is_down_is_not_misrouted(
    node_control, home_root, loop_thread, free_tcp_address
):
    sup, specs, path, tables = node_control
    tables[0] = table_of(b7="127.0.0.1:1", b8=free_tcp_address)  # b8 accepts no connection
    domain = domain_served_by(tables[0], "b8")
    spec = add_app(specs, home_root, domain, "v1")
    loop_thread.run(sup.socket_for(spec))
    answer = client.reload(domain, socket_path=str(path))
    assert (answer["result"], answer["misrouted"], answer["traffic_backend"]) == (
        "reloaded",
        False,
        "b7",
    )
    assert call(path, {"op": "status"}, timeout=5)["reloads"]["misrouted"] == 0


def test_a_reload_for_an_app_the_table_gives_this_node_is_not_misrouted(
    node_control, home_root, peer
):
    _, specs, path, tables = node_control
    tables[0] = table_of(b7="127.0.0.1:1", b8=peer)
    domain = domain_served_by(tables[0], "b7")
    add_app(specs, home_root, domain, "v1")
    answer = client.reload(domain, socket_path=str(path))
    assert (answer["misrouted"], answer["traffic_backend"], answer["warning"]) == (False, "b7", "")
