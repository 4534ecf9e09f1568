import json

import pytest
from django.core.management import CommandError, call_command

from panel.accounts.models import User
from routing.pool.models import Backend
from webapps.models import WebApp

pytestmark = pytest.mark.django_db

NODES = ["b1=127.0.0.1:9001", "b2=127.0.0.1:9002", "b3=127.0.0.1:9003", "b4=127.0.0.1:9004"]


@pytest.fixture
def demo_dirs(settings, tmp_path):
    settings.VAR_DIR = tmp_path / "var"
    settings.HOME_ROOT = tmp_path / "var" / "home"
    return settings


def seed(capsys) -> str:
    call_command("seed_demo", *NODES)
    return capsys.readouterr().out


def test_it_creates_the_demo_cast_apps_and_pool(demo_dirs, capsys):
    out = seed(capsys)
    assert set(User.objects.values_list("username", flat=True)) == {
        "admin", "IronHand", "JoeButy", "fred",
    }  # fmt: skip
    assert User.objects.get(username="admin").is_staff
    assert sorted(WebApp.objects.values_list("domain", flat=True)) == [
        "fred.apps.localhost", "ironhand.apps.localhost", "joebuty.apps.localhost",
    ]  # fmt: skip
    states = dict(Backend.objects.values_list("name", "state"))
    assert states == {"b1": "active", "b2": "active", "b3": "disabled", "b4": "disabled"}
    wsgi = demo_dirs.HOME_ROOT / "ironhand" / "ironhand.apps.localhost" / "wsgi.py"
    assert "Hello from IronHand's app" in wsgi.read_text()
    credentials = json.loads((demo_dirs.VAR_DIR / "demo-credentials.json").read_text())
    assert credentials["IronHand"] in out
    assert "http://ironhand.apps.localhost/" in out
    assert User.objects.get(username="IronHand").check_password(credentials["IronHand"])


def test_it_reuses_what_exists_on_a_second_run(demo_dirs, capsys):
    first = seed(capsys)
    wsgi = demo_dirs.HOME_ROOT / "fred" / "fred.apps.localhost" / "wsgi.py"
    wsgi.write_text("# fred's own code\n")
    second = seed(capsys)
    assert first == second  # same credentials, same apps
    assert User.objects.count() == 4
    assert WebApp.objects.count() == 3
    assert Backend.objects.count() == 4
    assert wsgi.read_text() == "# fred's own code\n"


def test_it_prints_app_urls_with_the_proxy_port(demo_dirs, capsys):
    call_command("seed_demo", "--proxy-port=8080", *NODES)
    assert "http://fred.apps.localhost:8080/" in capsys.readouterr().out


def test_it_rejects_a_node_without_an_address(demo_dirs):
    with pytest.raises(CommandError, match="NAME=HOST:PORT"):
        call_command("seed_demo", "b1=127.0.0.1:9001", "b2")
    assert not Backend.objects.exists()
    assert not User.objects.exists()
