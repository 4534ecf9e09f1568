"""Fixtures for the whole suite (the private Redis starts earlier: tests/private_redis.py)."""

from pathlib import Path

import pytest
from django.conf import settings


@pytest.fixture(autouse=True, scope="session")
def static_root():
    # WhiteNoise warns (an error under this suite) when STATIC_ROOT is missing, and a fresh
    # clone has not run collectstatic.
    Path(settings.STATIC_ROOT).mkdir(parents=True, exist_ok=True)
