"""The web apps' tests use the one cast of tests/conftest.py; every test here gets its own
HOME_ROOT and Redis key prefix, and nodes that have Python 3.10 to 3.12."""

import pytest


@pytest.fixture(autouse=True)
def _hosting_settings(hosting_settings):
    hosting_settings.PYTHON_VERSIONS = ["3.10", "3.11", "3.12"]
    return hosting_settings
