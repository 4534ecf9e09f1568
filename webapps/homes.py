"""Users' home directories and where an app's code may live.

Every path a user gives (source directory, virtualenv) must resolve, symlinks followed, inside
``HOME_ROOT/<username lower-cased>/``: a symlink that points out of the home is refused, so a
user cannot make the node run (or read) another user's files.

Files the panel writes into a home (the starter app) are written as the home's owner and
never through a symlink (``webapps.node.homefs``): by the panel itself when it runs as root, by
its node over the control socket when the panel runs as a uid of its own (which may not enter
homes), and as the panel's own user when it shares the node's user.

The WSGI entry rule is the node's (``webapps.node.spec.check_wsgi_entry``): whatever the panel
saves, the node can start.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from webapps.node import homefs
from webapps.node.control import ControlError, call
from webapps.node.spec import DEFAULT_WSGI_ENTRY, InvalidWsgiEntry, check_wsgi_entry

__all__ = [
    "DEFAULT_WSGI_ENTRY",
    "HomeEntry",
    "PathError",
    "clean_static_directory",
    "clean_wsgi_entry",
    "default_source_directory",
    "home_of",
    "resolve_inside_home",
    "write_home_entries",
    "write_starter_app",
]

STARTER_WSGI = '''\
"""Starter app created by the hosting panel: replace it with your own WSGI application."""


def application(environ, start_response):
    body = b"Hello from your new web app. Edit wsgi.py, then press Reload.\\n"
    headers = [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))]
    start_response("200 OK", headers)
    return [body]
'''


class PathError(ValueError):
    """A path that is not inside the owner's home; the message says why."""


def home_of(home_root: Path, username: str) -> Path:
    return Path(home_root) / username.lower()


def resolve_inside_home(home_root: Path, username: str, raw: object, what: str) -> Path:
    """``raw`` (absolute, or relative to the home) resolved with symlinks followed.

    Raises ``PathError`` when the result is outside the user's home.
    """
    if not isinstance(raw, str):
        raise PathError(f"the {what} must be a string")
    text = raw.strip()
    if not text:
        raise PathError(f"the {what} is empty")
    if "\x00" in text:
        raise PathError(f"the {what} contains a NUL character")
    home = home_of(home_root, username).resolve()
    candidate = Path(text) if Path(text).is_absolute() else home / text
    resolved = candidate.resolve()
    if not resolved.is_relative_to(home):
        raise PathError(f"the {what} {text!r} resolves to {resolved}, outside your home {home}/")
    return resolved


def clean_static_directory(home_root: Path, username: str, raw: object) -> Path:
    """A static files directory: absolute (or relative to the home), inside the home, through
    no ``..`` and no symlink, and a directory if it exists (it may be created later).

    Stricter than ``resolve_inside_home``: the node opens it from the home without following
    any symlink, so a path through one could never be served.
    """
    what = "static files directory"
    if not isinstance(raw, str):
        raise PathError(f"the {what} must be a string")
    text = raw.strip()
    if not text:
        raise PathError(f"the {what} is empty")
    if "\x00" in text:
        raise PathError(f"the {what} contains a NUL character")
    if ".." in Path(text).parts:
        raise PathError(f"the {what} {text!r} goes through '..'")
    given_home = home_of(home_root, username)
    home = given_home.resolve()
    candidate = Path(os.path.normpath(text if Path(text).is_absolute() else home / text))
    for base in (home, Path(os.path.abspath(given_home))):
        if candidate == base or candidate.is_relative_to(base):
            relative = candidate.relative_to(base)
            break
    else:
        raise PathError(f"the {what} {text!r} is outside your home {home}/")
    current = home
    try:
        for part in relative.parts:
            current = current / part
            if current.is_symlink():
                raise PathError(f"the {what} {text!r} goes through a symlink ({current})")
            if not current.exists():
                break
            if not current.is_dir():
                raise PathError(f"the {what} {text!r}: {current} is a file, not a directory")
    except PermissionError:
        # An isolated panel cannot look into an owner's home (0700, the owner's uid). The path
        # is inside the home by the checks above; the node opens it beneath the home without
        # following any symlink (webapps/node/static.py), so nothing outside can be served.
        pass
    return home / relative


def default_source_directory(home_root: Path, username: str, domain: str) -> Path:
    return home_of(home_root, username).resolve() / domain


def clean_wsgi_entry(raw: object) -> str:
    """``raw`` without surrounding spaces when the node can start it, else ``PathError``."""
    try:
        return check_wsgi_entry(raw.strip() if isinstance(raw, str) else raw)
    except InvalidWsgiEntry as exc:
        raise PathError(str(exc)) from None


@dataclass(frozen=True)
class HomeEntry:
    """One thing to create in a home: a file with ``content``, a symbolic link to ``link_to``,
    or (``directory``) a directory. ``parts``: its path from the home, one name each."""

    parts: tuple[str, ...]
    content: str = ""
    link_to: str | None = None
    directory: bool = False


def write_home_entries(
    home_root: Path,
    username: str,
    entries: list[HomeEntry] | tuple[HomeEntry, ...],
    *,
    uid: int = 0,
    gid: int = 0,
    node_socket: str = "",
) -> int:
    """Create each entry unless its name exists (kept as it is); how many were made.

    Written as the owner (``uid``/``gid``) and never through a symlink: one planted anywhere on
    the way raises ``PathError``. ``node_socket``: the node's control socket, which writes them
    when this process is not root.
    """
    made = 0
    try:
        for entry in entries:
            if node_socket and os.geteuid() != 0:
                request: dict = {"op": "home_file", "owner": username, "uid": uid, "gid": gid}
                request["path"] = list(entry.parts)
                if entry.directory:
                    request["directory"] = True
                elif entry.link_to is not None:
                    request["link_to"] = entry.link_to
                else:
                    request["content"] = entry.content
                answer = call(node_socket, request, timeout=10.0)
                if answer.get("status") != "OK":
                    raise PathError(str(answer.get("message") or f"unexpected answer: {answer}"))
                made += bool(answer.get("written"))
            elif entry.directory:
                made += homefs.make_directory(home_root, username, entry.parts, uid=uid, gid=gid)
            elif entry.link_to is not None:
                made += homefs.make_symlink(
                    home_root, username, entry.parts, entry.link_to, uid=uid, gid=gid
                )
            else:
                made += homefs.write_new_file(
                    Path(home_root), username, entry.parts, entry.content.encode(),
                    uid=uid, gid=gid,
                )  # fmt: skip
    except homefs.HomePathRefused as exc:
        raise PathError(str(exc)) from None
    except ControlError as exc:
        raise PathError(f"the node could not write into the home: {exc}") from None
    return made


def write_starter_app(
    home_root: Path,
    username: str,
    *directories: str,
    uid: int = 0,
    gid: int = 0,
    node_socket: str = "",
) -> bool:
    """Create ``~/<directories...>/wsgi.py`` (a starter app) unless one is there; True if written.

    As ``write_home_entries``: as the owner, never through a symlink.
    """
    entry = HomeEntry((*directories, "wsgi.py"), STARTER_WSGI)
    return bool(
        write_home_entries(home_root, username, [entry], uid=uid, gid=gid, node_socket=node_socket)
    )
