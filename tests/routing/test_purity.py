"""The routing library stays pure: the proxy and the nodes import it without Django, and its
core (everything but the Redis contract's modules) without Redis either.

Every module under routing/ outside routing/pool/ (the pool's Django app) is imported, found by
walking the package, not from a list. tests/test_layout.py reads the same rule from the sources.
"""

import json
import pkgutil
import subprocess
import sys

import pytest

import routing

CHECK = """
import json, sys
import {module}
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in ("django", "redis"))))
"""
# The Redis contract: these talk to Redis, so they import redis-py (never Django).
REDIS_MODULES = frozenset(
    {"routing.certs", "routing.connect", "routing.fleet", "routing.publish", "routing.subscriber"}
)


def library_modules() -> list[str]:
    names = ["routing"]
    for info in pkgutil.walk_packages(routing.__path__, "routing."):
        if info.name == "routing.pool" or info.name.startswith("routing.pool."):
            continue
        names.append(info.name)
    return names


def imported_frameworks(module: str) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-c", CHECK.format(module=module)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(result.stdout)


def test_the_walk_finds_the_library():
    names = library_modules()
    assert {"routing.hosts", "routing.table", "routing.subscriber"} <= set(names)
    assert not any(name.startswith("routing.pool") for name in names)


@pytest.mark.parametrize("module", sorted(set(library_modules()) - REDIS_MODULES))
def test_importing_the_core_pulls_in_neither_django_nor_redis(module):
    assert imported_frameworks(module) == []


@pytest.mark.parametrize("module", sorted(REDIS_MODULES))
def test_the_redis_contract_pulls_in_no_django(module):
    assert not any(m.split(".")[0] == "django" for m in imported_frameworks(module))


def test_the_check_sees_an_import_of_django():
    # Guards the tests above: the same probe must notice a module that does import Django.
    assert "django" in imported_frameworks("routing.pool.apps")
