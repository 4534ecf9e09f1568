"""The account tests use the one cast of tests/conftest.py; every test here gets its own
HOME_ROOT and Redis key prefix."""

import pytest


@pytest.fixture(autouse=True)
def _hosting_settings(hosting_settings):
    return hosting_settings
