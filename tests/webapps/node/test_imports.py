"""The node is a separate process: nothing under ``webapps/node/`` imports Django or the panel.

Every module of the package (walked with ``pkgutil``, so a new one is checked too) is imported in
a fresh interpreter, which then reports what came with them.
"""

from __future__ import annotations

import json
import subprocess
import sys

from tests.support import child_env, repo_root

PROBE = """
import importlib, json, pkgutil, sys
import {package} as package
names = [package.__name__] + [
    m.name for m in pkgutil.walk_packages(package.__path__, package.__name__ + ".")
]
for name in names + {also!r}:
    importlib.import_module(name)
print(json.dumps({{
    "modules": names,
    "django": sorted(m for m in sys.modules if m.split(".")[0] == "django"),
    "webapps": sorted(
        m for m in sys.modules
        if m.split(".")[0] == "webapps"
        and m not in ("webapps", "webapps.node")
        and not m.startswith("webapps.node.")
    ),
}}))
"""


def probe(package: str, also: tuple[str, ...] = ()) -> dict:
    env = child_env()
    env.pop("DJANGO_SETTINGS_MODULE", None)
    result = subprocess.run(
        [sys.executable, "-c", PROBE.format(package=package, also=list(also))],
        cwd=repo_root(),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(result.stdout)


def test_no_module_of_the_node_imports_django_or_the_panel():
    found = probe("webapps.node")
    assert "webapps.node.server" in found["modules"]
    assert "webapps.node.supervisor" in found["modules"]
    assert found["django"] == []
    assert found["webapps"] == []


def test_the_probe_sees_a_module_that_imports_django():
    # Guards the test above: the panel's node client reads Django settings.
    found = probe("webapps.node", also=("webapps.node_client",))
    assert "django.conf" in found["django"]
    assert "webapps.node_client" in found["webapps"]
