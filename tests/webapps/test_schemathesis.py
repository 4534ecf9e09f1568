"""schemathesis against a live panel, from its own schema (/api/schema/): every check, positive
and negative data, as an app's owner and as staff, with a bounded number of examples.

What the checks are told beyond the schema, and why:
- ``positive_data_acceptance`` also expects 400: the schema gives shapes, and some rules cannot
  be written in it (a domain must be free and not reserved, a path must lie inside the owner's
  home, a backend address must be new). Every such refusal is a documented 400 with its body.
- ``not_a_server_error`` allows 502 on the reload only: this panel runs outside any node, so a
  reload answers the documented 502 "no node serves <domain> here". Any other 5xx fails.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import token_for
from tests.support import child_env

pytestmark = pytest.mark.django_db(transaction=True)

MAX_EXAMPLES = 3
CONFIG = """
# The caller's own name and app, so that the user operations reach their logic, not a 404.
[parameters]
username = "{username}"
domain = "{domain}"

[checks.positive_data_acceptance]
expected-statuses = ["2xx", "400", "401", "403", "404", "429"]

[[operations]]
include-path-regex = "/reload/$"
checks.not_a_server_error.expected-statuses = ["2xx", "3xx", "4xx", "502"]
checks.positive_data_acceptance.expected-statuses = [
    "2xx", "400", "401", "403", "404", "429", "502",
]
"""


@pytest.fixture
def api_live(hosting_settings, live_server):
    hosting_settings.ALLOWED_HOSTS = [*hosting_settings.ALLOWED_HOSTS, "localhost"]
    # The fuzzer reloads often: the throttle is tested elsewhere (its 429 is documented).
    hosting_settings.RELOAD_THROTTLE_PER_MINUTE = 100_000
    return live_server.url


@pytest.mark.parametrize("role", ["owner", "staff"])
def test_the_api_meets_its_schema(api_live, request, tmp_path, owner_app, role):
    user = request.getfixturevalue(role)
    domain = owner_app.domain if role == "owner" else f"{user.username}.apps.localhost"
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG.format(username=user.username, domain=domain))
    result = subprocess.run(
        [
            sys.executable, "-m", "schemathesis.cli",
            "--config-file", str(config),
            "--no-color",
            "run", f"{api_live}/api/schema/",
            "--url", api_live,
            "--checks", "all",
            "--mode", "all",
            "--max-examples", str(MAX_EXAMPLES),
            "--workers", "1",
            "--generation-deterministic",
            "--header", f"Authorization: Token {token_for(user)}",
            "--request-timeout", "20",
        ],
        cwd=tmp_path,  # schemathesis keeps a cache in its working directory
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-12000:] + result.stderr[-3000:]
