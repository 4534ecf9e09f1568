"""Helpers for node tests: tiny WSGI apps in temporary homes, HTTP over unix sockets."""

from __future__ import annotations

import http.client
import os
import socket
import textwrap
import time
from pathlib import Path


def write_app(
    home_root: Path, owner: str, domain: str, body: str, entry_file: str = "wsgi.py"
) -> Path:
    """Write ``body`` (Python source defining ``application``) as an app's code; return its dir."""
    source = home_root / owner.lower() / domain
    source.mkdir(parents=True, exist_ok=True)
    path = source / entry_file
    previous = path.stat().st_mtime if path.exists() else None
    path.write_text(textwrap.dedent(body))
    if previous is not None:
        # Python's bytecode cache trusts (mtime in whole seconds, size): an edit within the same
        # second keeping the size would load the old code. A person's edits are seconds apart.
        bumped = max(time.time(), previous + 1)
        os.utime(path, (bumped, bumped))
    return source


def answer_app(text: str) -> str:
    """Source of an app that answers ``text`` on every request."""
    return f"""
        def application(environ, start_response):
            body = {text!r}.encode()
            start_response("200 OK", [("Content-Type", "text/plain"),
                                      ("Content-Length", str(len(body)))])
            return [body]
    """


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float = 10.0) -> None:
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.unix_path)


def get_unix(path: str, target: str = "/", host: str = "app.test", timeout: float = 10.0):
    """GET over a unix socket; returns (status, body text)."""
    conn = UnixHTTPConnection(path, timeout)
    try:
        conn.request("GET", target, headers={"Host": host})
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()
