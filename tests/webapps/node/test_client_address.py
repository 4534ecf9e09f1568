"""The visitor's address behind our own hops: a real node in front of the real panel (whose
gunicorn listens on a unix socket), visitors on two loopback addresses. Failed sign-ins from
one address never lock the owner out from another, and reloads and audit rows carry the
address the node saw."""

from __future__ import annotations

import http.client
import json
import re
from http.cookies import SimpleCookie

import pytest

from routing import reload_path
from tests.webapps.node.support import add_apps, manage

PANEL = "panel.localhost"
LOGIN = "/accounts/login/"
ATTACKER = "127.0.0.2"
OWNER = "127.0.0.3"
PASSWORD = "correct horse battery staple"


class Visitor:
    """An HTTP client whose connections leave from one address, keeping its cookies."""

    def __init__(self, node, address: str) -> None:
        self.node = node
        self.address = address
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, body: str = "", headers=None):
        conn = http.client.HTTPConnection(
            "127.0.0.1", self.node.port, timeout=60, source_address=(self.address, 0)
        )
        cookie = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        sent = {"Host": PANEL, **({"Cookie": cookie} if cookie else {}), **(headers or {})}
        try:
            conn.request(method, path, body=body.encode(), headers=sent)
            response = conn.getresponse()
            for value in response.headers.get_all("Set-Cookie") or []:
                for name, morsel in SimpleCookie(value).items():
                    self.cookies[name] = morsel.value
            return response.status, response.read().decode()
        finally:
            conn.close()

    def sign_in(self, password: str) -> int:
        status, page = self.request("GET", LOGIN)
        assert status == 200, page[:300]
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
        form = f"username=IronHand&password={password.replace(' ', '+')}"
        form += f"&csrfmiddlewaretoken={token}"
        status, _ = self.request(
            "POST", LOGIN, form, {"Content-Type": "application/x-www-form-urlencoded"}
        )
        return status


@pytest.fixture
def node(platform):
    tokens = add_apps(platform.env, {"IronHand": [("ironhand.apps.localhost", "")]})
    manage(
        platform.env,
        "shell",
        "-c",
        "from panel.accounts.models import User\n"
        "u = User.objects.get(username='IronHand')\n"
        f"u.set_password({PASSWORD!r})\nu.save()",
    )
    return platform.node("b1"), tokens["IronHand"], platform.env


def test_failures_from_one_address_never_lock_the_owner_out_from_another(node):
    b1, _, _ = node
    attacker, owner = Visitor(b1, ATTACKER), Visitor(b1, OWNER)
    for _ in range(6):
        assert attacker.sign_in("wrong") in (200, 429)
    assert attacker.sign_in(PASSWORD) == 429  # that address is locked out for this username
    assert owner.sign_in(PASSWORD) == 302  # the owner, from elsewhere, is not
    assert "sessionid" in owner.cookies


def test_reloads_and_audit_rows_carry_the_visitors_address(node):
    b1, token, env = node
    visitor = Visitor(b1, OWNER)
    status, _ = visitor.request(
        "POST",
        reload_path("IronHand", "ironhand.apps.localhost", api=True),
        headers={"Authorization": f"Token {token}", "Content-Length": "0"},
    )
    assert status in (200, 502)  # no route table here: the reload is refused, but recorded
    out = manage(
        env,
        "shell",
        "-c",
        "import json\n"
        "from panel.accounts.models import AuditEvent\n"
        "from webapps.models import ReloadEvent\n"
        "print(json.dumps([[e.client_ip for e in ReloadEvent.objects.all()],"
        " [e.client_ip for e in AuditEvent.objects.filter(action='webapp.reload')]]))",
    )
    assert json.loads(out.strip().splitlines()[-1]) == [[OWNER], [OWNER]]
