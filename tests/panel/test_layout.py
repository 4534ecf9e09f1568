"""The Django apps' dependencies point one way: routing.pool -> webapps -> panel.accounts.

Read from the source (every import, at any depth of a module), so an import inside a function
counts as much as one at the top.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.support import repo_root

# package -> packages it must never import (a prefix matches the package and its modules)
FORBIDDEN = {
    "panel/accounts": ("webapps", "routing.pool", "panel.settings", "panel.urls"),
    "webapps": ("routing.pool",),
}


def imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def offending(package: str, forbidden: tuple[str, ...]) -> list[str]:
    found = []
    for path in sorted((repo_root() / package).rglob("*.py")):
        for name in sorted(imported(path)):
            if any(name == bad or name.startswith(bad + ".") for bad in forbidden):
                found.append(f"{path.relative_to(repo_root())}: {name}")
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_arrow_points_up(package):
    assert offending(package, FORBIDDEN[package]) == []


def test_the_check_sees_an_arrow_pointing_up():
    # Guards the test above: the pool imports webapps, which the rule must notice.
    assert offending("routing/pool", ("webapps",)) != []
