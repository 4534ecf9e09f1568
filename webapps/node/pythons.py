"""The Pythons a node runs apps with, what a virtualenv says about itself, and the node's server.

- **Interpreters**: ``NODE_PYTHONS`` (``3.11=/usr/bin/python3.11,3.12=/opt/py/bin/python3.12``)
  or, when it is empty, those found on the node's ``PATH`` as ``python3.N`` (each one run once to
  ask its version and real executable: a pyenv shim is a script that may not work, and inside a
  sandbox only the real interpreter exists). The node's own interpreter always serves its own
  version unless the setting names another.
- **Virtualenvs** say which Python made them in ``pyvenv.cfg`` (``home``, ``version`` or
  ``version_info``); ``sandbox.pyvenv`` reads it, for the sandbox's mounts and the start check.
- **The server**: a virtualenv holds the app's packages only. The node copies its own gunicorn
  (and whatever gunicorn needs without extras) into a directory of its own, ``server_packages``,
  which a user app's interpreter appends to ``sys.path`` *after* everything its site found: the
  virtualenv's packages come first, its own gunicorn included when it has one (decision 0087).

Django-free and standard library only.
"""

from __future__ import annotations

import compileall
import contextlib
import hashlib
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

# The launcher (root) reads pyvenv.cfg to know what to mount, and imports nothing of ours
# beyond its own module: the reader lives there.
from webapps.node.sandbox import pyvenv

VERSION_RE = re.compile(r"3\.[0-9]{1,2}")
# Candidates looked for on PATH when NODE_PYTHONS is empty.
DISCOVER_MINORS = range(8, 20)
PROBE_TIMEOUT = 10.0
PROBE = "import sys; print('%d.%d' % sys.version_info[:2]); print(sys.executable)"
# The distribution the node serves apps with; its name is also the copy's directory.
SERVER = "gunicorn"
_REQUIREMENT_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def own_version() -> str:
    return f"{sys.version_info[0]}.{sys.version_info[1]}"


def parse_pythons(raw: str) -> dict[str, str]:
    """``"3.11=/usr/bin/python3.11, 3.12=/opt/py/bin/python3.12"`` as a dict; ValueError naming
    the entry that is not ``<3.N>=<absolute path>`` or a version given twice. "" gives {}."""
    found: dict[str, str] = {}
    for item in raw.replace("\n", ",").split(","):
        item = item.strip()
        if not item:
            continue
        version, equals, path = (part.strip() for part in item.partition("="))
        if not equals or not VERSION_RE.fullmatch(version):
            raise ValueError(
                f"{item!r} is not <version>=<interpreter>, like 3.12=/usr/bin/python3.12"
            )
        if not path.startswith("/"):
            raise ValueError(
                f"the interpreter of Python {version}, {path!r}, is not an absolute path"
            )
        if version in found:
            raise ValueError(f"Python {version} is given twice")
        found[version] = path
    return found


def probe(executable: str, timeout: float = PROBE_TIMEOUT) -> tuple[str, str] | None:
    """``(version, real executable)`` of an interpreter, or None when it does not run."""
    try:
        done = subprocess.run(
            [executable, "-I", "-c", PROBE],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"},
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    lines = done.stdout.split()
    if done.returncode != 0 or len(lines) != 2 or not VERSION_RE.fullmatch(lines[0]):
        return None
    # The file itself, not a link to it: a sandbox has the interpreter's installation only.
    return lines[0], os.path.realpath(lines[1])


def discover(path: str | None = None) -> dict[str, str]:
    """The node's own version as ``sys.executable``, and every ``python3.N`` on ``path`` that
    runs and says it is 3.N, as its real executable."""
    found = {own_version(): sys.executable}
    for minor in DISCOVER_MINORS:
        version = f"3.{minor}"
        if version in found:
            continue
        candidate = shutil.which(f"python{version}", path=path)
        if candidate is None:
            continue
        probed = probe(candidate)
        if probed is not None and probed[0] == version:
            found[version] = probed[1]
    return dict(sorted(found.items(), key=lambda item: int(item[0].split(".")[1])))


def pythons_for(raw: str, path: str | None = None) -> dict[str, str]:
    """The node's interpreters: ``parse_pythons(raw)`` (each checked to run and be its version)
    or, for "", ``discover()``. ValueError names a configured interpreter that is not what it
    says."""
    configured = parse_pythons(raw)
    if not configured:
        return discover(path)
    for version, executable in configured.items():
        probed = probe(executable)
        if probed is None:
            raise ValueError(f"the interpreter of Python {version}, {executable}, does not run")
        if probed[0] != version:
            raise ValueError(f"{executable} is Python {probed[0]}, not {version}")
    return configured


def describe(pythons: dict[str, str]) -> str:
    return ", ".join(f"{version} ({path})" for version, path in pythons.items()) or "none"


# --- virtualenvs -----------------------------------------------------------------------------
def venv_version(venv: Path, cfg: dict[str, str] | None = None) -> str:
    """``3.N`` of the Python that made the virtualenv: pyvenv.cfg's ``version_info`` (virtualenv,
    uv) or ``version`` (``python -m venv``), else its ``lib/python3.N``; "" when nothing says."""
    cfg = pyvenv(venv) if cfg is None else cfg
    for key in ("version_info", "version"):
        match = re.match(r"(3\.[0-9]{1,2})(?:\.|$)", cfg.get(key, ""))
        if match:
            return match[1]
    with contextlib.suppress(OSError):
        names = sorted(p.name for p in (venv / "lib").iterdir() if p.name.startswith("python3."))
        if len(names) == 1 and VERSION_RE.fullmatch(names[0].removeprefix("python")):
            return names[0].removeprefix("python")
    return ""


# --- the server for virtualenvs without one, and the platform's package set ------------------
def _distributions(names: list[str] | tuple[str, ...]) -> list[importlib.metadata.Distribution]:
    """The distributions ``names`` and those they require without extras, recursively; a name
    not installed here is left out."""
    seen: dict[str, importlib.metadata.Distribution] = {}
    todo = list(reversed(names))
    while todo:
        current = todo.pop()
        key = current.lower().replace("_", "-")
        if key in seen:
            continue
        try:
            dist = importlib.metadata.distribution(current)
        except importlib.metadata.PackageNotFoundError:
            continue
        seen[key] = dist
        for requirement in dist.requires or ():
            if "extra" in requirement.partition(";")[2]:
                continue
            match = _REQUIREMENT_NAME.match(requirement)
            if match:
                todo.append(match[1])
    return list(seen.values())


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)  # same file system: no copy (the files are only ever read)
    except OSError:
        shutil.copyfile(source, target)


def _package_set(parent: Path, label: str, dists, compile_with: tuple[str, ...]) -> Path:
    """``<parent>/<label>/site-packages`` holding exactly the files of ``dists``, made once
    (built aside, then renamed into place: a reader never sees half of it)."""
    target = parent / label / "site-packages"
    if (target.parent / "complete").is_file():
        return target
    parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".build-", dir=parent))
    try:
        packages = work / "site-packages"
        packages.mkdir()
        for dist in dists:
            for file in dist.files or ():
                relative = Path(str(file))
                if relative.is_absolute() or ".." in relative.parts:
                    continue  # scripts in bin/
                if "__pycache__" in relative.parts or relative.suffix == ".pyc":
                    continue  # compiled below, for every Python of the node
                source = Path(str(dist.locate_file(file)))
                if not source.is_file():
                    continue
                (packages / relative).parent.mkdir(parents=True, exist_ok=True)
                _link_or_copy(source, packages / relative)
        for executable in compile_with:
            if executable == sys.executable:
                compileall.compile_dir(str(packages), quiet=2, workers=0)
            else:
                subprocess.run(
                    [executable, "-I", "-m", "compileall", "-q", "-j", "0", str(packages)],
                    capture_output=True,
                    timeout=300,
                    check=False,
                )
        for directory, _, _ in os.walk(work):
            os.chmod(directory, 0o755)  # files keep their own mode: 0644 from an installer
        listing = "".join(f"{d.metadata['Name']}=={d.version}\n" for d in dists)
        (work / "complete").write_text(listing)
        with contextlib.suppress(FileNotFoundError):
            if not (target.parent / "complete").is_file():
                shutil.rmtree(target.parent)  # left half-made by a process that was killed
        with contextlib.suppress(OSError):
            os.rename(work, target.parent)  # another node of this host may have won: fine
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


def server_packages(parent: Path, pythons: dict[str, str]) -> Path:
    """A read-only copy of the node's gunicorn (and its requirements) under ``parent``, made once
    per version: ``<parent>/gunicorn-<version>/site-packages``, byte-compiled by every
    interpreter of ``pythons`` (the sandbox cannot write caches there).

    Its path has a ``site-packages`` part, so the hash-checked imports of ``gunicorn_conf``
    treat it as a library. Only the files the distributions list are there: nothing else of
    the node's environment (Django, the panel's code) is importable from it.
    """
    dists = _distributions([SERVER])
    if not dists:
        raise RuntimeError(f"{SERVER} is not installed in the node's environment")
    label = f"{SERVER}-{dists[0].version}"
    return _package_set(parent, label, dists, (sys.executable, *pythons.values()))


def platform_label(names: list[str] | tuple[str, ...]) -> str:
    """The directory name of the platform package set of ``names`` as installed here:
    ``platform-<hash of name==version, ...>``, so an upgrade makes a new set beside the old
    one and a virtualenv keeps the set it was made with. "" when none is installed."""
    dists = _distributions(names)
    if not dists:
        return ""
    listing = ",".join(sorted(f"{d.metadata['Name'].lower()}=={d.version}" for d in dists))
    return "platform-" + hashlib.blake2b(listing.encode(), digest_size=6).hexdigest()


def platform_packages(parent: Path, names: list[str] | tuple[str, ...]) -> Path | None:
    """The platform's package set (``PLATFORM_PACKAGES``: Django, Flask...) copied from the
    node's environment into ``<parent>/<platform_label>/site-packages``, shared by the nodes of
    a host; template virtualenvs name it in a ``.pth`` file (decision 0088). None when none of
    ``names`` is installed."""
    label = platform_label(names)
    if not label:
        return None
    # Not byte-compiled here (seconds for Django, at every node start that makes it): an app
    # compiles what it imports in memory; an operator may run compileall on it once.
    return _package_set(parent, label, _distributions(names), ())


def platform_site(parent: Path, names: list[str] | tuple[str, ...]) -> Path | None:
    """Where ``platform_packages`` puts the set, without making it (the panel's view)."""
    label = platform_label(names)
    return parent / label / "site-packages" if label else None
