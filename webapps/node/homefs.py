"""Writing into a user's home without ever following a symbolic link out of it.

A tenant controls everything inside their home, so a path there may be a symlink planted to
make a privileged writer (the node, as root) write somewhere else. Every step here walks one
name at a time from an open directory (``openat``-style, ``dir_fd``) with ``O_NOFOLLOW``: a
symlink anywhere on the way is refused, never followed. Files and directories made here belong
to the owner (``fchown`` when the writer is root) and a home is mode 0700.

Django-free: the panel uses it when it runs as root, and the node's control socket uses it for
a panel that runs as an unprivileged uid of its own.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
from pathlib import Path

HOME_MODE = 0o700
DIR_MODE = 0o755
FILE_MODE = 0o644
# A home's name: the username lower-cased; a path part: one name, never "." or "..".
_PART_RE = re.compile(r"^[^/\0]{1,255}$")
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class HomePathRefused(ValueError):
    """A path in a home that cannot be written safely (a symlink on the way...); says why."""


def _check_part(part: str) -> str:
    if not isinstance(part, str) or not _PART_RE.match(part) or part in (".", ".."):
        raise HomePathRefused(f"{part!r} is not a file or directory name")
    return part


def _open_child_dir(parent_fd: int, name: str, shown: str, *, uid: int, gid: int) -> int:
    """``name`` in ``parent_fd`` as a directory, made (owned by the owner) when missing."""
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
    except FileNotFoundError:
        pass
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise HomePathRefused(
                f"{shown} is a symbolic link or not a directory; refusing to write through it"
            ) from None
        raise
    with contextlib.suppress(FileExistsError):
        os.mkdir(name, DIR_MODE, dir_fd=parent_fd)
    fd = _open_child_dir(parent_fd, name, shown, uid=uid, gid=gid)
    _own(fd, uid, gid)
    return fd


def _own(fd: int, uid: int, gid: int) -> None:
    if os.geteuid() == 0 and uid > 0:
        os.fchown(fd, uid, gid)


def open_home(home_root: Path, username: str, *, uid: int = 0, gid: int = 0) -> int:
    """An open descriptor of ``home_root/<username lower-cased>``, made if missing.

    The home itself may not be a symlink. As root with a uid, the home is given to its owner,
    mode 0700. The caller closes the descriptor.
    """
    name = _check_part(username.lower())
    home_root = Path(home_root)
    home_root.mkdir(parents=True, exist_ok=True)
    root_fd = os.open(home_root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fd = _open_child_dir(root_fd, name, f"the home {home_root / name}", uid=uid, gid=gid)
    finally:
        os.close(root_fd)
    try:
        if os.geteuid() == 0 and uid > 0:
            os.fchown(fd, uid, gid)
            os.fchmod(fd, HOME_MODE)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _open_parent(
    home_root: Path, username: str, parts: list[str] | tuple[str, ...], *, uid: int, gid: int
) -> tuple[int, list[str], str]:
    """The directory that ``~/<parts...>`` is to be made in, opened (its fd), the checked names,
    and the parent as the owner sees it (``~user/a/b``); the directories on the way are walked
    without following a symlink and made as the owner when missing."""
    names = [_check_part(p) for p in parts]
    fd = open_home(home_root, username, uid=uid, gid=gid)
    shown = f"~{username.lower()}"
    try:
        for name in names[:-1]:
            shown += "/" + name
            child = _open_child_dir(fd, name, shown, uid=uid, gid=gid)
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd, names, shown


def write_new_file(
    home_root: Path,
    username: str,
    parts: list[str] | tuple[str, ...],
    content: bytes,
    *,
    uid: int = 0,
    gid: int = 0,
) -> bool:
    """Create ``~/<parts...>`` with ``content`` unless a file of that name is there already.

    True when written, False when the name existed (kept as it is, whatever it is: a symlink
    there is not followed). Directories on the way are made as the owner; a symlink among them
    raises ``HomePathRefused`` and nothing is written anywhere.
    """
    if not parts:
        raise HomePathRefused("no file name given")
    fd, names, _ = _open_parent(home_root, username, parts, uid=uid, gid=gid)
    try:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            file_fd = os.open(names[-1], flags, FILE_MODE, dir_fd=fd)
        except FileExistsError:
            return False
        try:
            _own(file_fd, uid, gid)
            view = memoryview(content)
            while view:
                view = view[os.write(file_fd, view) :]
        finally:
            os.close(file_fd)
        return True
    finally:
        os.close(fd)


def make_symlink(
    home_root: Path,
    username: str,
    parts: list[str] | tuple[str, ...],
    target: str,
    *,
    uid: int = 0,
    gid: int = 0,
) -> bool:
    """Create the symbolic link ``~/<parts...>`` -> ``target`` unless the name exists (False).

    The directories on the way are walked and made as in ``write_new_file``; the link itself
    is the owner's. What it points to is not followed, now or here: a link is only a name, and
    the owner could make any link of their own (a virtualenv's ``bin/python``).
    """
    if not parts:
        raise HomePathRefused("no link name given")
    if not isinstance(target, str) or not target or "\0" in target:
        raise HomePathRefused(f"{target!r} is not a link target")
    fd, names, _ = _open_parent(home_root, username, parts, uid=uid, gid=gid)
    try:
        try:
            os.symlink(target, names[-1], dir_fd=fd)
        except FileExistsError:
            return False
        if os.geteuid() == 0 and uid > 0:
            os.chown(names[-1], uid, gid, dir_fd=fd, follow_symlinks=False)
        return True
    finally:
        os.close(fd)


def make_directory(
    home_root: Path,
    username: str,
    parts: list[str] | tuple[str, ...],
    *,
    uid: int = 0,
    gid: int = 0,
) -> bool:
    """Create the directory ``~/<parts...>`` (and those on the way) as the owner; False when it
    was there already. A symlink on the way raises ``HomePathRefused``."""
    if not parts:
        raise HomePathRefused("no directory name given")
    fd, names, shown = _open_parent(home_root, username, parts, uid=uid, gid=gid)
    try:
        try:
            os.mkdir(names[-1], DIR_MODE, dir_fd=fd)
        except FileExistsError:
            made = False
        else:
            made = True
        shown += "/" + names[-1]
        os.close(_open_child_dir(fd, names[-1], shown, uid=uid, gid=gid))  # not a link
        if made and os.geteuid() == 0 and uid > 0:
            os.chown(names[-1], uid, gid, dir_fd=fd, follow_symlinks=False)
        return made
    finally:
        os.close(fd)
