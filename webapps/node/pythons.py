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


# --- the server for virtualenvs without one ----------------------------------------------------
def _distributions(name: str) -> list[importlib.metadata.Distribution]:
    """``name``'s distribution and those it requires without extras, recursively."""
    seen: dict[str, importlib.metadata.Distribution] = {}
    todo = [name]
    while todo:
        current = todo.pop()
        key = current.lower().replace("_", "-")
        if key in seen:
            continue
        dist = importlib.metadata.distribution(current)
        seen[key] = dist
        for requirement in dist.requires or ():
            if "extra" in requirement.partition(";")[2]:
                continue
            match = _REQUIREMENT_NAME.match(requirement)
            if match:
                todo.append(match[1])
    return list(seen.values())


def server_packages(parent: Path, pythons: dict[str, str]) -> Path:
    """A read-only copy of the node's gunicorn (and its requirements) under ``parent``, made once
    per version: ``<parent>/gunicorn-<version>/site-packages``, byte-compiled by every
    interpreter of ``pythons`` (the sandbox cannot write caches there).

    Its path has a ``site-packages`` part, so the hash-checked imports of ``gunicorn_conf``
    treat it as a library. Only the files the distributions list are copied: nothing else of
    the node's environment (Django, the panel's code) is importable from it.
    """
    dists = _distributions(SERVER)
    target = parent / f"{SERVER}-{dists[0].version}" / "site-packages"
    done = target.parent / "complete"
    if done.is_file():
        return target
    parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".server-", dir=parent))
    try:
        packages = work / "site-packages"
        packages.mkdir()
        for dist in dists:
            for file in dist.files or ():
                relative = Path(str(file))
                if (
                    relative.is_absolute()
                    or ".." in relative.parts
                    or "__pycache__" in relative.parts
                ):
                    continue  # scripts in bin/, stale caches
                source = Path(str(dist.locate_file(file)))
                if not source.is_file():
                    continue
                (packages / relative).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, packages / relative)
        for executable in {sys.executable, *pythons.values()}:
            if executable == sys.executable:
                compileall.compile_dir(str(packages), quiet=2)
            else:
                subprocess.run(
                    [executable, "-I", "-m", "compileall", "-q", str(packages)],
                    capture_output=True,
                    timeout=120,
                    check=False,
                )
        for directory, _, files in os.walk(work):
            os.chmod(directory, 0o755)
            for name in files:
                os.chmod(os.path.join(directory, name), 0o644)
        (work / "complete").write_text("")
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(target.parent)  # an incomplete copy of a node killed while making it
        os.replace(work, target.parent)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target
