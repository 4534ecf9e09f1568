"""The calls pythonanywhere-core 0.3.3 makes for logs, and the Web tab's log pages.

``get_log_info``: GET files/tree/?path=/var/log/ -> a JSON list of "/var/log/<domain>.<kind>.log"
(".1", ".<n>.gz"); ``delete_log``: DELETE files/path/var/log/<domain>.<kind>.log[suffix]/ -> ok.
The logs are another node's here (read in VAR_DIR/log/<backend>/, as the panel does for any
node but its own).
"""

import gzip

import pytest

from panel.accounts.models import AuditEvent
from tests.webapps.test_web_tab import publish
from webapps.node.logs import log_path, rotated_path

pytestmark = pytest.mark.django_db

DOMAIN = "ironhand.example.com"
TREE = "/api/v0/user/IronHand/files/tree/?path=/var/log/"
FILE = "/api/v0/user/IronHand/files/path/var/log/"


@pytest.fixture
def logs_dir(settings, tmp_path, owner_app):
    settings.VAR_DIR = tmp_path / "var"
    table = publish(settings, "b1")
    directory = settings.VAR_DIR / "log" / table.backend_for(DOMAIN).name
    directory.mkdir(parents=True)
    log_path(directory, DOMAIN, "access").write_text('"GET / HTTP/1.1" 200\n')
    log_path(directory, DOMAIN, "error").write_text("Traceback\n")
    rotated_path(log_path(directory, DOMAIN, "error"), 1).write_text("older\n")
    rotated_path(log_path(directory, DOMAIN, "error"), 2).write_bytes(gzip.compress(b"oldest\n"))
    return directory


def get_log_info(file_list, domain=DOMAIN):
    """pythonanywhere_core.webapp.Webapp.get_log_info's parsing, verbatim in substance."""
    logs = {"access": [], "error": [], "server": []}
    prefix = f"/var/log/{domain}."
    for name in file_list:
        if isinstance(name, str) and name.startswith(prefix):
            log = name[len(prefix) :].split(".")
            if log[0] in logs:
                if log[-1] == "log":
                    index = 0
                elif log[-1] == "1":
                    index = 1
                elif log[-1] == "gz":
                    index = int(log[-2])
                else:
                    continue
                logs[log[0]].append(index)
    return logs


def test_the_tree_lists_the_log_files_as_the_client_reads_them(owner_api, logs_dir):
    response = owner_api.get(TREE)
    assert response.status_code == 200
    assert response.json() == [
        f"/var/log/{DOMAIN}.access.log",
        f"/var/log/{DOMAIN}.error.log",
        f"/var/log/{DOMAIN}.error.log.1",
        f"/var/log/{DOMAIN}.error.log.2.gz",
    ]
    assert get_log_info(response.json()) == {"access": [0], "error": [0, 1, 2], "server": []}


def test_the_tree_lists_only_var_log(owner_api, logs_dir):
    assert owner_api.get("/api/v0/user/IronHand/files/tree/?path=/home/").status_code == 404


@pytest.mark.parametrize(("suffix", "index"), [("", 0), (".1", 1), (".2.gz", 2)])
def test_delete_log_deletes_as_the_client_asks(owner_api, logs_dir, suffix, index):
    # delete_log: call_api(f"{files_url}path/var/log/{domain}.{log_type}.log{suffix}/", "delete")
    response = owner_api.delete(f"{FILE}{DOMAIN}.error.log{suffix}/")
    assert response.status_code == 204
    path = rotated_path(log_path(logs_dir, DOMAIN, "error"), index)
    assert (path.read_bytes() == b"") if index == 0 else not path.exists()
    assert AuditEvent.objects.filter(action="logs.delete", outcome="ok").count() == 1
    assert owner_api.delete(f"{FILE}{DOMAIN}.server.log/").status_code == 404


def test_a_log_downloads_whole(owner_api, logs_dir):
    response = owner_api.get(f"{FILE}IronHand.Example.com.error.log.2.gz")
    assert response.status_code == 200
    assert gzip.decompress(b"".join(response.streaming_content)) == b"oldest\n"


@pytest.mark.parametrize(
    "name",
    [f"{DOMAIN}.error.log", f"{DOMAIN.upper()}.error.log", f"{DOMAIN}.error.log.1"],
)
def test_the_outsider_gets_404_and_nothing_happens(outsider_api, logs_dir, name):
    for user in ("IronHand", "mallory"):
        base = f"/api/v0/user/{user}/files/path/var/log/{name}/"
        assert outsider_api.get(base).status_code == 404
        assert outsider_api.delete(base).status_code == 404
    assert outsider_api.get(TREE).status_code == 404
    assert outsider_api.get("/api/v0/user/mallory/files/tree/?path=/var/log/").json() == []
    assert (logs_dir / f"{DOMAIN}.error.log").read_text() == "Traceback\n"
    assert (logs_dir / f"{DOMAIN}.error.log.1").exists()


@pytest.mark.parametrize(
    "name", ["..%2F..%2Fetc%2Fpasswd", f"{DOMAIN}.error.log.0.gz", f"{DOMAIN}.debug.log", "x"]
)
def test_names_that_are_no_log_are_404(owner_api, logs_dir, name):
    assert owner_api.delete(f"{FILE}{name}/").status_code == 404


# --- the Web tab -------------------------------------------------------------------------------

DETAIL = f"/user/IronHand/webapps/{DOMAIN}/"


def test_the_app_page_lists_the_logs_with_sizes_and_links(owner_web, logs_dir):
    page = owner_web.get(DETAIL).content.decode()
    assert f"{DOMAIN}.error.log.2.gz" in page
    assert f"{DETAIL}logs/{DOMAIN}.access.log/download/" in page
    assert "10\xa0bytes" in page


def test_the_log_page_is_a_refreshable_tail_that_can_follow(owner_web, logs_dir):
    page = owner_web.get(f"{DETAIL}logs/{DOMAIN}.error.log/")
    assert page.status_code == 200
    assert "Traceback" in page.content.decode()
    assert 'data-follow="' in page.content.decode()
    with open(log_path(logs_dir, DOMAIN, "error"), "a") as fh:
        fh.write("more\n")
    follow = owner_web.get(f"{DETAIL}logs/{DOMAIN}.error.log/?after=10").json()
    assert follow == {"text": "more\n", "offset": 15, "size": 15}


def test_the_web_tab_downloads_a_log_whole(owner_web, logs_dir):
    response = owner_web.get(f"{DETAIL}logs/{DOMAIN}.error.log/download/")
    assert b"".join(response.streaming_content) == b"Traceback\n"
    assert response["Content-Disposition"] == f'attachment; filename="{DOMAIN}.error.log"'


def test_the_outsider_cannot_see_the_log_pages(outsider_web, logs_dir):
    assert outsider_web.get(f"{DETAIL}logs/{DOMAIN}.error.log/").status_code == 404
    assert outsider_web.get(f"{DETAIL}logs/{DOMAIN}.error.log/download/").status_code == 404
