"""Drives PythonAnywhere's own client library, ``pythonanywhere-core`` (unmodified), against the
platform: run as ``python -m tests.e2e.official_client STEP DOMAIN [PROJECT_PATH]`` with the
client's own environment (``PYTHONANYWHERE_SITE``: the panel's host and HTTPS port,
``PYTHONANYWHERE_USERNAME``, ``API_TOKEN``, ``REQUESTS_CA_BUNDLE``: the demo CA). Prints what
the client returned as JSON; a client exception exits non-zero with its message.

The one thing added: names under ``.localhost`` resolve to loopback, as browsers resolve them
(RFC 6761) and this machine's resolver does not. The client reads its environment when imported,
so each run is a fresh process.
"""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path

_getaddrinfo = socket.getaddrinfo


def _loopback_localhost(host, *args, **kwargs):
    if isinstance(host, str) and (host == "localhost" or host.endswith(".localhost")):
        host = "127.0.0.1"
    return _getaddrinfo(host, *args, **kwargs)


def main(step: str, domain: str, project: str = "") -> object:
    socket.getaddrinfo = _loopback_localhost
    from pythonanywhere_core.webapp import Webapp

    webapp = Webapp(domain)
    if step == "create":
        webapp.sanity_checks(nuke=False)
        version = f"{sys.version_info[0]}.{sys.version_info[1]}"
        webapp.create(version, None, Path(project), nuke=False)
        return "created"
    if step == "static":
        webapp.add_default_static_files_mappings(Path(project))
        return "mapped"
    if step == "logs":
        return webapp.get_log_info()
    if step == "delete_log":
        webapp.delete_log(project)  # the log type, here
        return "deleted"
    if step == "set_ssl":
        folder = Path(project)
        webapp.set_ssl((folder / "cert.pem").read_text(), (folder / "key.pem").read_text())
        return "set"
    if step == "get_ssl_info":
        return webapp.get_ssl_info()
    if step == "reload":
        webapp.reload()
        return "reloaded"
    if step == "get":
        return webapp.get()
    if step == "list":
        return Webapp.list_webapps()
    if step == "protect":
        return webapp.patch(
            {
                "password_protection_enabled": True,
                "password_protection_username": "staging",
                "password_protection_password": "open sesame",
            }
        )
    if step == "unprotect":
        return webapp.patch({"password_protection_enabled": False})
    if step == "delete":
        webapp.delete()
        return "deleted"
    raise SystemExit(f"unknown step {step!r}")


if __name__ == "__main__":
    print(json.dumps(main(*sys.argv[1:]), default=str))  # datetimes as text
