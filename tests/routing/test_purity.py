"""The routing core stays pure: the proxy and the nodes import it without Django or Redis."""

import json
import subprocess
import sys

import pytest

CHECK = """
import json, sys
import {module}
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in ("django", "redis"))))
"""


@pytest.mark.parametrize(
    "module",
    [
        "routing",
        "routing.hosts",
        "routing.table",
        "routing.versions",
        "routing.signing",
        "routing.keys",
        "routing.make_vectors",
    ],
)
def test_importing_the_core_pulls_in_neither_django_nor_redis(module):
    result = subprocess.run(
        [sys.executable, "-c", CHECK.format(module=module)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert json.loads(result.stdout) == []


def test_the_check_sees_an_import_of_django():
    # Guards the test above: the same probe must notice a module that does import Django.
    result = subprocess.run(
        [sys.executable, "-c", CHECK.format(module="routing.pool.apps")],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "django" in json.loads(result.stdout)
