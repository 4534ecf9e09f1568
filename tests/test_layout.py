"""The import graph: dependencies point one way, and the libraries below the apps import no Django.

Rooms, from the top down (docs/architecture.md):

    panel (the project: settings, urls, wsgi, Celery)
    routing.pool -> webapps -> panel.accounts          the Django apps
    webapps.node -> proxy -> routing                   the Django-free libraries

A room may import itself, the rooms listed for it below, and third-party packages; the
Django-free rooms import no Django-world package at all. Every module under the four top-level
packages is read (its source, so an import inside a function counts too), not a list of them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("panel", "webapps", "routing", "proxy")

# Most specific first: a module belongs to the first room its name starts with.
ROOMS = ("panel.accounts", "panel", "webapps.node", "webapps", "routing.pool", "routing", "proxy")

MAY_IMPORT: dict[str, frozenset[str]] = {
    "routing": frozenset(),
    "proxy": frozenset({"routing"}),
    "webapps.node": frozenset({"proxy", "routing"}),
    "panel.accounts": frozenset({"routing"}),
    "webapps": frozenset({"panel.accounts", "webapps.node", "proxy", "routing"}),
    "routing.pool": frozenset({"webapps", "panel.accounts", "webapps.node", "proxy", "routing"}),
    "panel": frozenset(ROOMS),
}
DJANGO_FREE = frozenset({"routing", "proxy", "webapps.node"})
DJANGO_WORLD = frozenset(
    {"django", "rest_framework", "drf_spectacular", "celery", "axes", "whitenoise", "kombu"}
)


def room_of(module: str) -> str | None:
    for room in ROOMS:
        if module == room or module.startswith(room + "."):
            return room
    return None


def imported_names(source: str, module: str, is_package: bool) -> list[str]:
    """Absolute names of every module ``source`` imports (relative imports resolved)."""
    names: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = module.split(".")
                base = parts if is_package else parts[:-1]
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join(base)
                target = ".".join(part for part in (prefix, node.module) if part)
            else:
                target = node.module or ""
            names.append(target)
            # `from routing import pool` imports the module routing.pool.
            names.extend(f"{target}.{alias.name}" for alias in node.names)
    return names


def violations(module: str, imports: list[str]) -> list[str]:
    """Each import of ``module`` that points the wrong way, as a sentence."""
    room = room_of(module)
    if room is None:
        return []
    found = []
    for name in imports:
        top = name.split(".")[0]
        if room in DJANGO_FREE and top in DJANGO_WORLD:
            found.append(f"{module} imports {name}: {room} must not import Django")
            continue
        target = room_of(name)
        if target is None or target == room:
            continue
        if target not in MAY_IMPORT[room]:
            found.append(f"{module} imports {name}: {room} must not import {target}")
    return sorted(set(found))


def project_modules() -> list[tuple[str, Path]]:
    modules = []
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            relative = path.relative_to(REPO).with_suffix("")
            parts = list(relative.parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules.append((".".join(parts), path))
    return modules


MODULES = project_modules()


def test_every_package_is_read():
    # Guards the walk: it finds modules in every room, so an empty glob cannot pass.
    rooms = {room_of(name) for name, _ in MODULES}
    assert rooms == set(ROOMS)
    assert len(MODULES) > 60


@pytest.mark.parametrize(("module", "path"), MODULES, ids=[name for name, _ in MODULES])
def test_no_import_points_the_wrong_way(module, path):
    source = path.read_text(encoding="utf-8")
    imports = imported_names(source, module, path.name == "__init__.py")
    assert violations(module, imports) == []


@pytest.mark.parametrize(
    ("module", "source", "expected"),
    [
        ("routing.table", "import django", "routing must not import Django"),
        ("proxy.core", "def f():\n    from django.conf import settings", "must not import Django"),
        ("webapps.node.supervisor", "from webapps import models", "must not import webapps"),
        ("panel.accounts.models", "from webapps.models import WebApp", "must not import webapps"),
        ("webapps.views", "from routing.pool import actions", "must not import routing.pool"),
        ("webapps.views", "from routing import pool", "must not import routing.pool"),
        ("routing.hosts", "from proxy import core", "routing must not import proxy"),
        ("webapps.node.server", "from . import state\nfrom .. import models", "import webapps"),
    ],
)
def test_the_check_sees_an_arrow_pointing_the_wrong_way(module, source, expected):
    found = violations(module, imported_names(source, module, is_package=False))
    assert any(expected in line for line in found), found


def test_the_check_lets_an_arrow_pointing_down_pass():
    source = "from panel.accounts.models import User\nfrom routing import canonical_host"
    assert violations("webapps.models", imported_names(source, "webapps.models", False)) == []
