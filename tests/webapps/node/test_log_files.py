"""Log files on a node: bounded rotated history, listing, reading from an offset, deleting,
and the control socket's log_files / log_read / log_delete."""

from __future__ import annotations

import base64
import gzip

import pytest

from webapps.node import logs
from webapps.node.control import ControlServer, call
from webapps.node.directory import AppDirectory
from webapps.node.node import Node

NAME = "alice.apps.test"


def test_it_keeps_a_bounded_compressed_history(short_tmp):
    path = logs.log_path(short_tmp, NAME, "server")
    log = logs.RotatingLog(path, max_bytes=100, keep=4)
    for i in range(30):
        log.write(f"{i:02d}".encode() * 25)  # 50 bytes: a rotation every other write
    log.close()
    kept = sorted(p.name for p in short_tmp.iterdir())
    assert kept == [path.name, path.name + ".1", path.name + ".2.gz", path.name + ".3.gz"]
    assert path.read_bytes() == b"".join(f"{i:02d}".encode() * 25 for i in (28, 29))
    older = gzip.decompress((short_tmp / (path.name + ".3.gz")).read_bytes())
    assert older == b"".join(f"{i:02d}".encode() * 25 for i in (22, 23))
    assert sum(p.stat().st_size for p in short_tmp.iterdir()) < 4 * 100


def test_it_lists_reads_and_deletes(short_tmp):
    path = logs.log_path(short_tmp, NAME, "access")
    log = logs.RotatingLog(path, max_bytes=10)
    log.write(b"0123456789abc")
    files = logs.log_files(short_tmp, NAME)
    assert [(f.kind, f.index, f.size) for f in files] == [("access", 0, 3), ("access", 1, 10)]
    assert logs.read_from(path, 1) == (b"bc", 3, 3)
    assert logs.read_from(path, 99)[0] == b"abc"  # past the end: the file was rotated
    assert logs.delete_log(short_tmp, NAME, "access", 1) is True
    assert logs.delete_log(short_tmp, NAME, "access", 1) is False
    assert logs.delete_log(short_tmp, NAME, "access", 0) is True
    assert path.read_bytes() == b""  # the current log is emptied, and still written to
    log.write(b"new")
    log.close()
    assert path.read_bytes() == b"new"


@pytest.fixture
def control(short_tmp, loop_thread, supervisor_factory):
    sup = supervisor_factory()
    node = Node(name="n1", supervisor=sup, directory=AppDirectory(system={}, lookup={}.get))
    server = ControlServer(short_tmp / "c.sock", node.dispatch)
    loop_thread.run(server.start())
    yield short_tmp / "c.sock", sup
    loop_thread.run(server.close())


def test_the_control_socket_lists_reads_and_deletes(control):
    sock, sup = control
    sup.log_file(NAME, "error").write_bytes(b"Traceback\n")
    listing = call(sock, {"op": "log_files", "domain": "Alice.Apps.Test"})
    assert [(f["kind"], f["index"], f["size"]) for f in listing["files"]] == [("error", 0, 10)]
    read = call(sock, {"op": "log_read", "domain": NAME, "kind": "error", "offset": 5})
    assert (base64.b64decode(read["data_b64"]), read["offset"], read["size"]) == (b"back\n", 10, 10)
    deleted = call(sock, {"op": "log_delete", "domain": NAME, "kind": "error", "index": 0})
    assert deleted["deleted"] is True
    assert sup.log_file(NAME, "error").read_bytes() == b""


@pytest.mark.parametrize(
    "request_",
    [
        {"op": "log_read", "domain": NAME, "kind": "../../etc/passwd"},
        {"op": "log_read", "domain": NAME, "kind": "error", "index": 9},
        {"op": "log_read", "domain": NAME, "kind": "error", "offset": -1},
        {"op": "log_delete", "domain": "../x", "kind": "error"},
    ],
)
def test_the_control_socket_refuses_bad_log_requests(control, request_):
    answer = call(control[0], request_)
    assert answer["status"] == "ERROR" and answer["message"].startswith("bad request")
