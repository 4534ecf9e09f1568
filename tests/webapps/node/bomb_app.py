"""A tenant's WSGI app that bombs on request: ``/fork`` starts a fork bomb, ``/memory``
allocates until something stops it. ``/ping`` (and anything else) answers 200."""

import os
import time


def fork_bomb():
    deadline = time.monotonic() + 60  # bounded even if nothing stopped it
    while time.monotonic() < deadline:
        try:
            os.fork()
        except OSError:
            time.sleep(0.01)
    os._exit(0)


def application(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/fork":
        if os.fork() == 0:
            fork_bomb()
        body = b"fork bomb started"
    elif path == "/memory":
        hoard = []
        for _ in range(4096):  # 64 GiB at most: the limit stops it long before
            hoard.append(b"\x01" * (16 * 1024 * 1024))  # written, so really resident
        body = b"allocated everything"
    else:
        body = b"pong"
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]
