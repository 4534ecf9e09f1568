"""Settings that keep secrets and sessions safe, read in fresh interpreters as a deployment does."""

from __future__ import annotations

import json
import stat

from tests.support import child_env, run_python

PROBE = """
import json, django
django.setup()
from django.conf import settings as s
print(json.dumps({
    "session": [s.SESSION_COOKIE_NAME, s.SESSION_COOKIE_SECURE, s.SESSION_COOKIE_PATH],
    "csrf": [s.CSRF_COOKIE_NAME, s.CSRF_COOKIE_SECURE, s.CSRF_COOKIE_PATH],
    "domains": [s.SESSION_COOKIE_DOMAIN, s.CSRF_COOKIE_DOMAIN],
}))
"""


def _settings(tmp_path, **extra: str) -> dict:
    env = child_env(DJANGO_SETTINGS_MODULE="panel.settings", VAR_DIR=str(tmp_path), **extra)
    env.pop("SECRET_KEY", None)
    return json.loads(run_python(env, "-c", PROBE).strip().splitlines()[-1])


def test_it_names_its_cookies_host_only_and_secure_when_served_over_https(tmp_path):
    found = _settings(tmp_path, PANEL_HTTPS="1")
    assert found["session"] == ["__Host-sessionid", True, "/"]
    assert found["csrf"] == ["__Host-csrftoken", True, "/"]
    assert found["domains"] == [None, None]


def test_it_keeps_plain_cookie_names_over_plain_http(tmp_path):
    found = _settings(tmp_path, PANEL_HTTPS="0")
    assert found["session"][:2] == ["sessionid", False]
    assert found["csrf"][:2] == ["csrftoken", False]


def test_it_creates_the_secret_key_readable_by_its_owner_only(tmp_path):
    _settings(tmp_path)
    key = tmp_path / "secret_key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    first = key.read_text()
    _settings(tmp_path)
    assert key.read_text() == first  # made once, then kept
