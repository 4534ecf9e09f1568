"""System checks for the hosting settings, and `check --deploy` with the production settings."""

import secrets
import subprocess
import sys

import pytest

from panel.accounts.checks import check_account_settings
from tests.support import child_env, repo_root
from webapps.checks import check_hosting_settings


def ids():
    return [error.id for error in [*check_hosting_settings(), *check_account_settings()]]


def test_it_passes_with_the_defaults():
    assert ids() == []


@pytest.mark.parametrize(
    ("name", "value", "check_id"),
    [
        ("PANEL_HOST", "Panel.Example.com", "webapps.E001"),
        ("PANEL_HOST", "bad host", "webapps.E001"),
        ("APPS_DOMAIN", "apps.example.com.", "webapps.E002"),
        ("RESERVED_DOMAINS", ["ok.example", "a/b"], "webapps.E003"),
        ("WEBAPPS_RELOADER", "webapps.reload.NoSuchReloader", "webapps.E004"),
        ("WEBAPPS_RELOADER", "webapps.reload.ReloadResult", "webapps.E004"),
        ("TRUSTED_PROXIES", ["127.0.0.1/32", "10.0.0.0/33"], "webapps.E006"),
    ],
)
def test_it_reports_bad_hosting_settings_with_a_stable_id(settings, name, value, check_id):
    setattr(settings, name, value)
    assert ids() == [check_id]


# The production settings documented in docs/panel.md.
PRODUCTION = {
    "DEBUG": "0",
    "SESSION_COOKIE_SECURE": "1",
    "CSRF_COOKIE_SECURE": "1",
    "SECURE_SSL_REDIRECT": "1",
    "SECURE_HSTS_SECONDS": "31536000",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS": "1",
    "SECURE_HSTS_PRELOAD": "1",
    "PANEL_HOST": "panel.example.com",
    "APPS_DOMAIN": "apps.example.com",
}


def test_check_deploy_is_clean_with_the_production_settings(tmp_path):
    env = child_env(
        **PRODUCTION,
        SECRET_KEY=secrets.token_urlsafe(50),
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        VAR_DIR=str(tmp_path),
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=repo_root(),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout
