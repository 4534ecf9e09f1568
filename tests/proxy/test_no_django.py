"""The proxy must never import Django (a framework on the request path is what we avoid)."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import proxy
from tests.support import child_env, repo_root


def test_no_module_under_proxy_imports_django():
    names = [
        m.name
        for m in pkgutil.walk_packages(proxy.__path__, "proxy.")
        if m.name != "proxy.__main__"  # importing it runs the proxy
    ]
    assert "proxy.engine" in names
    code = (
        "import importlib, sys\n"
        f"for name in {names!r}:\n"
        "    importlib.import_module(name)\n"
        "bad = sorted(m for m in sys.modules if m == 'django' or m.startswith('django.'))\n"
        "assert not bad, bad\n"
    )
    env = child_env()
    env.pop("DJANGO_SETTINGS_MODULE", None)
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=repo_root(), env=env, capture_output=True, timeout=60
    )
    assert result.returncode == 0, result.stderr.decode()


def test_no_source_file_under_proxy_mentions_django_imports():
    for path in (repo_root() / "proxy").rglob("*.py"):
        text = path.read_text()
        assert "import django" not in text and "from django" not in text, path
