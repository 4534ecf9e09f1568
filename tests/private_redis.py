"""A pytest plugin (loaded with ``-p`` from pyproject) that starts one private Redis for the run.

It must run before pytest-django imports the settings, which read ``REDIS_URL``; a conftest's
``pytest_configure`` is too late for that. Set ``TEST_PRIVATE_REDIS=0`` to use ``REDIS_URL`` as
given instead.
"""

from __future__ import annotations

import os

import pytest

from tests.support import RedisServer

_redis: RedisServer | None = None


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config, parser, args) -> None:
    global _redis
    if os.environ.get("TEST_PRIVATE_REDIS", "1") == "1" and _redis is None:
        _redis = RedisServer().start()
        os.environ["REDIS_URL"] = _redis.url


def pytest_unconfigure(config: pytest.Config) -> None:
    global _redis
    if _redis is not None:
        _redis.cleanup()
        _redis = None
