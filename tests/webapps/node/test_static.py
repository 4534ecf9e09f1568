"""The node serves static files mappings itself: a real NodeServer on loopback, real files.

The lookup is a dict (the node knows no database); no app process is started, because every
request here falls under a mapping, and one that does not gets the app's 502 (no source).
"""

from __future__ import annotations

import gzip
import os
import re
import socket
from email.utils import formatdate

import pytest

from tests.support import wait_until
from tests.webapps.node.support import node_with
from webapps.node import static
from webapps.node.spec import AppSpec, StaticMapping

DOMAIN = "alice.apps.test"
BIG = 300 * 1024


@pytest.fixture
def site(short_tmp, home_root):
    home = home_root / "alice"
    assets = home / "site" / "static"
    (assets / "css").mkdir(parents=True)
    (assets / "css" / "app.css").write_text("body { color: red }\n")
    (assets / "big.bin").write_bytes(bytes(range(256)) * (BIG // 256))
    (assets / "page.js").write_text("console.log('plain')\n")
    (assets / "page.js.gz").write_bytes(gzip.compress(b"console.log('plain')\n"))
    (assets / "page.js.br").write_bytes(b"pretend-brotli")
    other = home / "site" / "other"
    other.mkdir()
    (other / "x.txt").write_text("other mapping\n")
    secret = home_root / "secret.txt"
    secret.write_text("top secret\n")
    (assets / "leak.txt").symlink_to(secret)
    (assets / "inside.txt").symlink_to("css/app.css")
    (assets / "up.txt").symlink_to(home / "site" / "other" / "x.txt")
    apps = {
        DOMAIN: AppSpec(
            name=DOMAIN,
            source_directory=str(home / "nowhere"),
            owner="alice",
            static=(
                StaticMapping("/static/", str(assets.resolve())),
                StaticMapping("/static/other", str(other.resolve()), "no-store"),
            ),
        )
    }
    return apps, assets


@pytest.fixture
def node(short_tmp, home_root, loop_thread, site):
    apps, _ = site
    config, server = node_with(short_tmp, home_root, loop_thread, apps, start_timeout=5.0)
    yield config.port
    loop_thread.run(server.stop(), timeout=30)


def request(port: int, target: str | bytes, method: str = "GET", **headers: str):
    """One request on its own connection: (status, headers by lower-cased name, body)."""
    if isinstance(target, str):
        target = target.encode()
    lines = [b"%s %s HTTP/1.1" % (method.encode(), target), f"Host: {DOMAIN}".encode()]
    lines += [f"{k.replace('_', '-')}: {v}".encode() for k, v in headers.items()]
    lines.append(b"Connection: close")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"\r\n".join(lines) + b"\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *fields = head.decode("latin-1").split("\r\n")
    parsed = {}
    for field in fields:
        name, _, value = field.partition(":")
        parsed[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), parsed, body


# --- the pure core ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "target",
    [
        b"/static/%2e%2e/secret.txt",
        b"/static/%2E%2E/%2e%2e/secret.txt",
        b"/static/..%2fsecret.txt",
        b"/static/css%2Fapp.css",
        b"/static/..%5csecret.txt",
        b"/static/a\\..\\secret.txt",
        b"/static/app.css%00.txt",
        b"/static/../secret.txt",
        b"/static/./css/app.css",
        b"/static/%zz",
    ],
)
def test_it_refuses_targets_that_could_leave_the_directory(target):
    mapping = StaticMapping("/static/", "/home/alice/static")
    assert static.lookup([mapping], target) == (mapping, None)


def test_it_picks_the_longest_prefix_by_whole_segments():
    short = StaticMapping("/static/", "/h/a")
    long = StaticMapping("/static/img", "/h/b")
    assert static.lookup([short, long], b"/static/img/x.png") == (long, [b"x.png"])
    assert static.lookup([short, long], b"/static/imgs/x.png") == (short, [b"imgs", b"x.png"])
    assert static.lookup([short, long], b"/staticky") is None
    assert static.lookup([short], b"/static//css/a.css?v=1") == (short, [b"css", b"a.css"])


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("static/", "must start with '/'"),
        ("/static/?x", "query"),
        ("/a/../b/", "'..' segment"),
        ("/a//b/", "empty"),
        ("/st atic/", "not a path"),
        ("/%2e/", "escape"),
        ("/a\\b/", "'\\'"),
        ("/" + "a" * 300, "longer than"),
        (3, "string"),
    ],
)
def test_it_refuses_url_prefixes_that_are_not_paths(raw, reason):
    with pytest.raises(static.InvalidMapping, match=re.escape(reason)):
        static.check_url_prefix(raw)


def test_it_decides_ranges():
    info = static.FileInfo(100, 0.0, b'"e"')
    kw = {"content_type": b"text/plain", "cache_control": b"x"}
    part = static.decide(b"GET", {b"range": b"bytes=10-19"}, info, **kw)
    assert (part.status, part.offset, part.length, part.announced) == (206, 10, 10, 10)
    assert (b"Content-Range", b"bytes 10-19/100") in part.headers
    head = static.decide(b"HEAD", {b"range": b"bytes=10-19"}, info, **kw)
    assert (head.status, head.length, head.announced) == (206, 0, 10)
    assert static.decide(b"GET", {b"range": b"bytes=-5"}, info, **kw).offset == 95
    assert static.decide(b"GET", {b"range": b"bytes=90-"}, info, **kw).length == 10
    assert static.decide(b"GET", {b"range": b"bytes=100-"}, info, **kw).status == 416
    assert static.decide(b"GET", {b"range": b"bytes=1-2,5-6"}, info, **kw).status == 200
    assert static.decide(b"GET", {b"range": b"lines=1-2"}, info, **kw).status == 200
    stale = {b"range": b"bytes=1-2", b"if-range": b'"old"'}
    assert static.decide(b"GET", stale, info, **kw).status == 200


# --- served by a node -------------------------------------------------------------------------


def test_it_serves_a_file_with_validators_and_type(node):
    status, headers, body = request(node, "/static/css/app.css")
    assert (status, body) == (200, b"body { color: red }\n")
    assert headers["content-type"] == "text/css; charset=utf-8"
    assert headers["content-length"] == str(len(body))
    assert headers["cache-control"] == static.DEFAULT_CACHE_CONTROL
    assert headers["vary"] == "Accept-Encoding"
    assert headers["x-backend"] == "n1"
    assert headers["etag"].startswith('"') and headers["last-modified"].endswith("GMT")


def test_it_answers_304_to_a_matching_validator(node):
    _, first, _ = request(node, "/static/css/app.css")
    status, headers, body = request(node, "/static/css/app.css", If_None_Match=first["etag"])
    assert (status, body, headers["etag"]) == (304, b"", first["etag"])
    since = request(node, "/static/css/app.css", If_Modified_Since=first["last-modified"])
    assert since[0] == 304
    old = formatdate(0, usegmt=True)
    assert request(node, "/static/css/app.css", If_Modified_Since=old)[0] == 200


def test_it_serves_a_large_file_whole_and_by_range(node, site):
    _, assets = site
    whole = (assets / "big.bin").read_bytes()
    status, headers, body = request(node, "/static/big.bin")
    assert (status, len(body), body == whole) == (200, BIG, True)
    status, headers, body = request(node, "/static/big.bin", Range="bytes=1000-200999")
    assert (status, body == whole[1000:201000]) == (206, True)
    assert headers["content-range"] == f"bytes 1000-200999/{BIG}"
    status, headers, body = request(node, "/static/big.bin", Range=f"bytes={BIG}-")
    assert (status, headers["content-range"], body) == (416, f"bytes */{BIG}", b"")


def test_it_answers_head_with_the_length_and_no_body(node):
    status, headers, body = request(node, "/static/big.bin", method="HEAD")
    assert (status, headers["content-length"], body) == (200, str(BIG), b"")


def test_it_serves_precompressed_siblings_to_clients_that_accept_them(node):
    status, headers, body = request(node, "/static/page.js", Accept_Encoding="gzip")
    assert (status, headers["content-encoding"]) == (200, "gzip")
    assert gzip.decompress(body) == b"console.log('plain')\n"
    status, headers, body = request(node, "/static/page.js", Accept_Encoding="gzip, br")
    assert (headers["content-encoding"], body) == ("br", b"pretend-brotli")
    status, headers, body = request(node, "/static/page.js", Accept_Encoding="br;q=0")
    assert ("content-encoding" not in headers, body) == (True, b"console.log('plain')\n")


def test_it_uses_the_longest_mapping_and_its_cache_control(node):
    status, headers, body = request(node, "/static/other/x.txt")
    assert (status, body, headers["cache-control"]) == (200, b"other mapping\n", "no-store")


@pytest.mark.parametrize(
    "target",
    [
        "/static/%2e%2e/%2e%2e/%2e%2e/secret.txt",
        "/static/..%2f..%2f..%2fsecret.txt",
        "/static/..\\..\\..\\secret.txt",
        "/static/%00",
        "/static/leak.txt",  # a symlink inside the directory pointing out of it
        "/static/up.txt",  # ... into another directory of the same home
        "/static/css",  # a directory
        "/static/missing.css",
    ],
)
def test_it_answers_404_and_reads_nothing_outside(node, target):
    status, _, body = request(node, target)
    assert status == 404
    assert b"secret" not in body and b"other mapping" not in body


def test_it_follows_a_symlink_that_stays_inside(node):
    assert request(node, "/static/inside.txt")[2] == b"body { color: red }\n"


def test_it_refuses_a_mapped_directory_swapped_for_a_symlink(node, site, home_root):
    _, assets = site
    outside = home_root / "elsewhere"
    (outside / "css").mkdir(parents=True)
    (outside / "css" / "app.css").write_text("not yours\n")
    assert request(node, "/static/css/app.css")[0] == 200  # the directory is open now
    assets.rename(assets.with_name("static.old"))
    assets.symlink_to(outside)

    # Within the cache time the directory opened before is served (it is still the owner's
    # own); then the symlink is refused. Never what it points to.
    def refused() -> bool:
        status, _, body = request(node, "/static/css/app.css")
        assert body != b"not yours\n"
        return status == 404

    wait_until(refused, 10, what="the swapped directory refused")


def test_it_does_not_let_other_methods_reach_the_app(node):
    status, headers, _ = request(node, "/static/css/app.css", method="POST")
    assert (status, headers["allow"]) == (405, "GET, HEAD")


def test_it_serves_files_kept_alive_on_one_connection(node):
    with socket.create_connection(("127.0.0.1", node), timeout=10) as sock:
        one = f"GET /static/css/app.css HTTP/1.1\r\nHost: {DOMAIN}\r\n\r\n".encode()
        big = f"GET /static/big.bin HTTP/1.1\r\nHost: {DOMAIN}\r\n\r\n".encode()
        sock.sendall(one + big + one)
        data = b""
        want = 3
        while data.count(b"HTTP/1.1 200") < want or not data.endswith(b"red }\n"):
            chunk = sock.recv(1 << 20)
            assert chunk, "the node closed a keep-alive connection"
            data += chunk
    assert data.count(b"HTTP/1.1 200 OK") == 3
    assert len(data) > BIG


def test_open_file_never_opens_outside_without_openat2(site, home_root, monkeypatch):
    apps, _ = site
    files = static.StaticFiles(home_root)
    monkeypatch.setattr(files._opener, "available", False)
    mapping = apps[DOMAIN].static[0]
    fd = files.open_file("alice", mapping, [b"css", b"app.css"])
    assert fd is not None
    os.close(fd)
    assert files.open_file("alice", mapping, [b"leak.txt"]) is None
    assert files.open_file("alice", mapping, [b"up.txt"]) is None
    assert files.open_file("bob", mapping, [b"css", b"app.css"]) is None
