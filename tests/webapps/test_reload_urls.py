"""One set of reload URLs: for every spelling of a reload path, the router (``route_key``, on
the target as the proxy parsed it) and the panel (Django's resolver, on the ``PATH_INFO`` a real
gunicorn gives it for the target the proxy forwards) agree: a reload of the same app on both,
or a reload on neither.

The router's side is the proxy's own parsing (``httptools`` + ``proxy.core.validate_request``)
then ``routing.route_key``; a request it refuses (400) never reaches a panel, so it is a reload
on neither side. The panel's side is what gunicorn hands Django, turned into ``path_info`` by
Django's own ``WSGIRequest`` and matched by ``django.urls.resolve``.
"""

from __future__ import annotations

import io
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import httptools
import pytest
from django.core.handlers.wsgi import WSGIRequest
from django.urls import Resolver404, resolve

from proxy.core import HttpError, Limits, validate_request
from routing import InvalidHost, canonical_host, route_key
from tests.support import child_env, repo_root, wait_until
from webapps import api, views
from webapps.models import ReloadEvent

PANEL = "panel.localhost"
USER = "IronHand"
DOMAIN = "IronHand.Example.com"
KEY = canonical_host(DOMAIN)
WEB = ["user", USER, "webapps", DOMAIN, "reload"]
API = ["api", "v0", "user", USER, "webapps", DOMAIN, "reload"]


@pytest.fixture(scope="module")
def gunicorn(tmp_path_factory):
    """A real gunicorn (the panel's server) serving tests/webapps/path_echo.py on a socket."""
    sock = tmp_path_factory.mktemp("echo") / "echo.sock"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--bind",
            f"unix:{sock}",
            "--workers",
            "1",
            "tests.webapps.path_echo:application",
        ],
        cwd=repo_root(),
        env=child_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: _exchange(sock, b"/") is not None, timeout=30, what="gunicorn")
        yield sock
    finally:
        process.terminate()
        process.wait(20)


def _exchange(sock: Path, target: bytes) -> tuple[int, bytes] | None:
    """POST ``target`` to gunicorn; its status and body (the PATH_INFO it saw)."""
    with socket.socket(socket.AF_UNIX) as conn:
        conn.settimeout(10)
        conn.connect(str(sock))
        conn.sendall(
            b"POST " + target + b" HTTP/1.1\r\nHost: " + PANEL.encode() + b"\r\n"
            b"Content-Length: 0\r\nConnection: close\r\n\r\n"
        )
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


class _Head:
    def __init__(self) -> None:
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.done = False

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.done = True


def router_view(target: bytes):
    """(key the router routes by, or None when the proxy refuses it; the target forwarded)."""
    raw = (
        b"POST "
        + target
        + b" HTTP/1.1\r\nHost: "
        + PANEL.encode()
        + b"\r\nContent-Length: 0\r\n\r\n"
    )
    fields = _Head()
    parser = httptools.HttpRequestParser(fields)
    try:
        parser.feed_data(raw)
        assert fields.done
        head = validate_request(
            parser.get_method(),
            fields.url,
            parser.get_http_version(),
            fields.headers,
            parser.should_keep_alive(),
            Limits(),
        )
    except (httptools.HttpParserError, HttpError):
        return None, None
    try:
        return route_key(head.host.decode("ascii"), head.path, PANEL), head.target
    except InvalidHost:
        return None, None


def panel_view(sock: Path, target: bytes) -> str | None:
    """The key of the app whose reload view the panel's resolver picks for ``target``, or
    None when it resolves to anything else (or gunicorn refuses the request)."""
    status, path_info = _exchange(sock, target)
    if status != 200:
        return None
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": path_info.decode("latin-1"),
        "SCRIPT_NAME": "",
        "wsgi.input": io.BytesIO(),
    }
    try:
        match = resolve(WSGIRequest(environ).path_info)
    except Resolver404:
        return None
    view_class = getattr(match.func, "view_class", type(None))
    if match.func is not views.webapp_reload and not issubclass(view_class, api.WebAppReloadView):
        return None
    try:
        return canonical_host(match.kwargs["domain"])
    except InvalidHost:
        return None  # the view answers 404: no app has that domain


def _encode_all(segment: str) -> str:
    return "".join(f"%{b:02X}" for b in segment.encode())


def spellings() -> list[str]:
    """Reload paths spelled every way the brief of this test names, one change at a time."""
    out: list[str] = []
    for base in (WEB, API):
        for slash in ("/", ""):
            out.append("/" + "/".join(base) + slash)
            for i, segment in enumerate(base):

                def with_(value: str, i=i, base=base, slash=slash) -> str:
                    parts = list(base)
                    parts[i] = value
                    return "/" + "/".join(parts) + slash

                out += [
                    with_(segment.upper()),
                    with_(segment.title()),
                    with_(_encode_all(segment)),
                    with_(_encode_all(segment).lower()),
                    with_(quote(segment[:1]) + "%" + f"{ord(segment[1]):02x}" + segment[2:]),
                    with_(segment + ";x"),
                    with_(segment + "%3Bx"),
                    with_(segment + "%3bx"),
                    with_(segment + "%2F"),
                    with_("."),
                    with_(".."),
                    with_("%2e"),
                    with_("%2E%2E"),
                    with_(""),
                    with_(segment + "/."),
                    with_(segment + "/.."),
                    with_("./" + segment),
                    with_(segment + "/"),  # a doubled slash after it
                    with_("/" + segment),  # a doubled slash before it
                ]
        path = "/" + "/".join(base)
        out += [
            "/" + path + "/",
            path + "//",
            path + "/.",
            path + "/?next=/",
            path + "?x=1",
            path + "/;x",
            path + ";x",
            path + "/#x",
            path + "#x",
            f"http://{PANEL}{path}/",
            f"http://{PANEL}{path}",
            f"HTTP://{PANEL}{path}",
        ]
    return list(dict.fromkeys(out))  # each spelling once, in order


SPELLINGS = spellings()


@pytest.mark.parametrize("path", SPELLINGS)
def test_the_router_and_the_panel_agree_on_what_is_a_reload(gunicorn, path):
    key, forwarded = router_view(path.encode())
    router_reload = key is not None and key != PANEL
    panel = panel_view(gunicorn, forwarded) if forwarded is not None else None
    assert router_reload == (panel is not None), (path, key, panel)
    if router_reload:
        assert key == panel == KEY, (path, key, panel)


@pytest.mark.parametrize("base", [WEB, API], ids=["web", "api"])
@pytest.mark.parametrize("slash", ["/", ""], ids=["slash", "no-slash"])
def test_a_reload_with_or_without_its_trailing_slash_is_a_reload_on_both(gunicorn, base, slash):
    path = "/" + "/".join(base) + slash
    key, forwarded = router_view(path.encode())
    assert key == KEY
    assert panel_view(gunicorn, forwarded) == KEY


def test_the_spellings_include_reloads_and_non_reloads_on_both_sides(gunicorn):
    verdicts = {router_view(p.encode())[0] not in (None, PANEL) for p in SPELLINGS}
    assert verdicts == {True, False}


@pytest.mark.django_db
def test_it_reloads_through_the_api_without_the_trailing_slash(settings, owner_api, owner_app):
    settings.WEBAPPS_RELOADER = "tests.webapps.support.OkReloader"
    response = owner_api.post("/api/v0/user/IronHand/webapps/ironhand.example.com/reload")
    assert (response.status_code, response.json()["status"]) == (200, "OK")
    assert ReloadEvent.objects.get().via == "api"


@pytest.mark.django_db
def test_it_reloads_from_the_web_tab_without_the_trailing_slash(settings, owner_web, owner_app):
    settings.WEBAPPS_RELOADER = "tests.webapps.support.OkReloader"
    response = owner_web.post("/user/IronHand/webapps/ironhand.example.com/reload")
    assert response.status_code == 302
    assert ReloadEvent.objects.get().via == "ui"


@pytest.mark.django_db
def test_an_outsider_gets_404_without_the_trailing_slash_too(outsider_api, owner_app):
    response = outsider_api.post("/api/v0/user/IronHand/webapps/ironhand.example.com/reload")
    assert response.status_code == 404
    assert not ReloadEvent.objects.exists()
