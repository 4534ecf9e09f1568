"""The admin: staff see apps and reloads, read-only."""

import pytest

pytestmark = pytest.mark.django_db


def test_it_lists_everyones_apps_for_staff(admin_web, owner_app):
    html = admin_web.get("/admin/webapps/webapp/").content.decode()
    assert "ironhand.example.com" in html


def test_it_sends_the_outsider_to_the_admin_sign_in(outsider_web, owner_app):
    response = outsider_web.get("/admin/webapps/webapp/")
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


@pytest.fixture
def own_node(settings, monkeypatch):
    """The panel's own node (its core: supervisor and control socket, no HTTP side), with the
    app ``ironhand.example.com`` as real gunicorn code in a temporary home."""
    import shutil
    import tempfile
    from pathlib import Path

    from tests.support import LoopThread
    from tests.webapps.node.support import answer_app, write_app
    from webapps import node_client
    from webapps.node.control import ControlServer
    from webapps.node.directory import AppDirectory
    from webapps.node.node import Node
    from webapps.node.spec import AppSpec
    from webapps.node.supervisor import Supervisor

    root = Path(tempfile.mkdtemp(prefix="nd-", dir="/tmp"))
    source = write_app(root / "home", "IronHand", "ironhand.example.com", answer_app("hi"))
    spec = AppSpec(name="ironhand.example.com", source_directory=str(source), owner="IronHand")
    loop = LoopThread(timeout=60)
    path = root / "control.sock"

    async def build():
        sup = Supervisor(run_dir=root / "run", log_dir=root / "log", home_root=root / "home",
                         idle_timeout=None)  # fmt: skip
        node = Node(name="b1", supervisor=sup, directory=AppDirectory(system={}, lookup={}.get))
        server = ControlServer(path, node.dispatch)
        await server.start()
        return sup, server

    sup, server = loop.run(build())
    monkeypatch.setattr(node_client, "STATUS_CACHE_SECONDS", 0.0)
    settings.NODE_NAME, settings.NODE_CONTROL_SOCKET = "b1", str(path)
    try:
        yield loop, sup, spec
    finally:
        loop.run(sup.stop_all())
        loop.run(server.close())
        loop.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_it_shows_each_apps_process_and_memory_on_the_panels_node(admin_web, owner_app, own_node):
    import re

    loop, sup, spec = own_node
    assert "not started on this node" in admin_web.get("/admin/webapps/webapp/").content.decode()
    loop.run(sup.socket_for(spec))
    running = re.compile(r"running, \d+\.\d MiB in [23] processes")
    assert running.search(admin_web.get("/admin/webapps/webapp/").content.decode())
    page = admin_web.get(f"/admin/webapps/webapp/{owner_app.pk}/change/").content.decode()
    assert "On this node:" in page and running.search(page)
    loop.run(sup.stop(spec.name, "test"))
    html = admin_web.get("/admin/webapps/webapp/").content.decode()
    assert '<td class="field-on_node">stopped</td>' in html


def test_it_says_when_the_panels_node_cannot_be_asked(admin_web, owner_app, settings, tmp_path):
    settings.NODE_NAME, settings.NODE_CONTROL_SOCKET = "b1", str(tmp_path / "missing.sock")
    html = admin_web.get("/admin/webapps/webapp/").content.decode()
    assert "node b1 not reachable (cannot reach" in html


def test_it_shows_each_apps_server_settings(admin_web, owner_app):
    owner_app.threads = 4
    owner_app.save()
    expected = "workers 2 (default), threads 4 (gthread), timeout 60 s (default)"
    assert expected in admin_web.get("/admin/webapps/webapp/").content.decode()
    page = admin_web.get(f"/admin/webapps/webapp/{owner_app.pk}/change/").content.decode()
    assert expected in page
