"""The app's page shows the last lines of its logs from the node that serves it."""

import pytest

from tests.webapps.test_web_tab import publish
from webapps.node.logs import log_path

pytestmark = pytest.mark.django_db

DETAIL = "/user/IronHand/webapps/ironhand.example.com/"


@pytest.fixture
def node_logs(settings, tmp_path):
    settings.VAR_DIR = tmp_path / "var"
    return settings.VAR_DIR / "log"


def write_log(log_root, backend, kind, text):
    path = log_path(log_root / backend, "ironhand.example.com", kind)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_it_shows_the_logs_of_the_backend_that_serves_the_app(
    settings, owner_web, owner_app, node_logs
):
    table = publish(settings, "b1", "b2")
    serving = table.backend_for("ironhand.example.com").name
    other = "b2" if serving == "b1" else "b1"
    write_log(node_logs, serving, "error", "Traceback: ImportError in wsgi.py\n")
    write_log(node_logs, serving, "access", '"GET / HTTP/1.1" 200\n')
    write_log(node_logs, other, "error", "not this node's log\n")

    page = owner_web.get(DETAIL).content.decode()

    assert f"on {serving}, last lines" in page
    assert "Traceback: ImportError in wsgi.py" in page
    assert "&quot;GET / HTTP/1.1&quot; 200" in page
    assert "not this node&#x27;s log" not in page


def test_it_keeps_only_the_last_lines(settings, owner_web, owner_app, node_logs):
    table = publish(settings, "b1")
    lines = "".join(f"request {i}\n" for i in range(200))
    write_log(node_logs, table.backend_for("ironhand.example.com").name, "access", lines)

    page = owner_web.get(DETAIL).content.decode()

    assert "request 199" in page
    assert "request 149\n" not in page


def test_it_says_why_there_are_no_logs_without_a_route_table(owner_web, owner_app, node_logs):
    page = owner_web.get(DETAIL).content.decode()
    assert "No backend serves this app, so it has no logs yet." in page


def test_it_says_when_the_own_node_cannot_be_asked(settings, owner_web, owner_app, node_logs):
    table = publish(settings, "b1")
    settings.NODE_NAME = table.backend_for("ironhand.example.com").name
    settings.NODE_CONTROL_SOCKET = str(node_logs / "missing.sock")

    response = owner_web.get(DETAIL)

    assert response.status_code == 200
    assert f"Could not read the logs on {settings.NODE_NAME}" in response.content.decode()


def test_an_outsider_gets_404_and_no_logs(outsider_web, owner_app, node_logs):
    assert outsider_web.get(DETAIL).status_code == 404
