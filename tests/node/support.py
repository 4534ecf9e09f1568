"""Helpers for node tests: tiny WSGI apps in temporary homes, HTTP over unix sockets."""

from __future__ import annotations

import asyncio
import http.client
import os
import socket
import textwrap
import threading
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any


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


class LoopThread:
    """An asyncio loop in a thread, so blocking test code can drive async objects."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, Any], timeout: float = 60.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def submit(self, coro: Coroutine[Any, Any, Any]):
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()
