"""GET|POST .../webapps/<domain>/static_files/ and GET|PUT|PATCH|DELETE .../static_files/<id>/"""

import pytest

from panel.accounts.models import AuditEvent
from webapps.models import StaticFileMapping

pytestmark = pytest.mark.django_db

URL = "/api/v0/user/IronHand/webapps/ironhand.example.com/static_files/"


@pytest.fixture
def home(settings, owner):
    home = settings.HOME_ROOT / "ironhand"
    (home / "site" / "static").mkdir(parents=True, exist_ok=True)
    return home


@pytest.fixture
def mapping(owner_api, owner_app, home):
    response = owner_api.post(URL, {"url": "/static/", "path": str(home / "site/static")})
    assert response.status_code == 201, response.content
    return response.json()


def test_it_creates_what_the_official_client_posts(owner_api, owner_app, home):
    # pythonanywhere-core 0.3.3: call_api(url, "post", json={"url": ..., "path": ...}) == 201
    for url, path in (("/static/", home / "site/static"), ("/media/", home / "site/media")):
        response = owner_api.post(URL, {"url": url, "path": str(path)}, format="json")
        assert response.status_code == 201, response.content
        assert set(response.json()) == {"id", "url", "path", "cache_control"}
    assert list(StaticFileMapping.objects.values_list("url", flat=True)) == ["/media/", "/static/"]
    assert AuditEvent.objects.filter(action="static.create").count() == 2


def test_it_lists_reads_patches_puts_and_deletes(owner_api, mapping, home):
    detail = f"{URL}{mapping['id']}/"
    assert owner_api.get(URL).json() == [mapping]
    assert owner_api.get(detail).json() == mapping
    patched = owner_api.patch(detail, {"cache_control": "public, max-age=600"}, format="json")
    assert (patched.status_code, patched.json()["cache_control"]) == (200, "public, max-age=600")
    put = owner_api.put(detail, {"url": "/assets/", "path": "site/static"})
    assert (put.status_code, put.json()["url"], put.json()["path"]) == (
        200,
        "/assets/",
        str(home.resolve() / "site/static"),
    )
    assert owner_api.put(detail, {"url": "/x/"}).status_code == 400  # PUT needs both
    assert owner_api.delete(detail).status_code == 204
    assert not StaticFileMapping.objects.exists()
    actions = list(AuditEvent.objects.values_list("action", flat=True).order_by("id"))
    assert actions[-3:] == ["static.update", "static.update", "static.delete"]


def test_a_patch_that_changes_nothing_writes_nothing(owner_api, mapping):
    before = AuditEvent.objects.count()
    response = owner_api.patch(f"{URL}{mapping['id']}/", {"url": "/static/"}, format="json")
    assert response.status_code == 200
    assert AuditEvent.objects.count() == before


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/etc", "outside your home"),
        ("site/../../other", "'..'"),
        ("/tmp/../etc", "'..'"),
        ("linked/static", "symlink"),
        ("site/file.css", "is a file, not a directory"),
        ("", "blank"),
    ],
)
def test_it_refuses_a_bad_directory(owner_api, owner_app, home, tmp_path, path, reason):
    (home / "site" / "file.css").write_text("x")
    (tmp_path / "elsewhere" / "static").mkdir(parents=True)
    (home / "linked").symlink_to(tmp_path / "elsewhere")
    response = owner_api.post(URL, {"url": "/static/", "path": path}, format="json")
    assert response.status_code == 400
    assert reason in response.json()["path"][0]
    assert not StaticFileMapping.objects.exists()


def test_it_refuses_a_symlink_inside_the_home_too(owner_api, owner_app, home):
    (home / "alias").symlink_to(home / "site")
    response = owner_api.post(URL, {"url": "/s/", "path": str(home / "alias/static")})
    assert (response.status_code, "symlink" in response.json()["path"][0]) == (400, True)


@pytest.mark.parametrize(
    "url", ["static/", "/static/?v=1", "/a/../b/", "/st atic/", "/%2e%2e/", "http://x/", "/a\\b"]
)
def test_it_refuses_a_url_that_is_not_a_path(owner_api, owner_app, home, url):
    response = owner_api.post(URL, {"url": url, "path": "site/static"}, format="json")
    assert response.status_code == 400
    assert response.json()["url"][0]
    assert not StaticFileMapping.objects.exists()


def test_it_refuses_the_same_url_twice(owner_api, mapping):
    response = owner_api.post(URL, {"url": "/static/", "path": "site/static"}, format="json")
    assert (response.status_code, "already mapped" in response.json()["url"][0]) == (400, True)


def test_it_refuses_unknown_fields(owner_api, owner_app, home):
    response = owner_api.post(URL, {"url": "/s/", "path": "site/static", "root": "/"})
    assert (response.status_code, response.json()["root"]) == (400, ["Unknown field."])


@pytest.mark.parametrize(
    "domain", ["ironhand.example.com", "IronHand.Example.COM", "ironhand.example.com."]
)
def test_the_outsider_gets_404_and_nothing_happens(outsider_api, mapping, domain):
    base = f"/api/v0/user/IronHand/webapps/{domain}/static_files/"
    own = f"/api/v0/user/mallory/webapps/{domain}/static_files/"
    for url in (base, own):
        assert outsider_api.get(url).status_code == 404
        assert outsider_api.post(url, {"url": "/x/", "path": "/tmp"}).status_code == 404
        detail = f"{url}{mapping['id']}/"
        assert outsider_api.get(detail).status_code == 404
        assert outsider_api.patch(detail, {"url": "/evil/"}).status_code == 404
        assert outsider_api.put(detail, {"url": "/e/", "path": "/tmp"}).status_code == 404
        assert outsider_api.delete(detail).status_code == 404
    assert list(StaticFileMapping.objects.values_list("url", flat=True)) == ["/static/"]
    assert AuditEvent.objects.filter(outcome=AuditEvent.Outcome.DENIED).exists()


def test_another_apps_mapping_id_is_404(owner_api, mapping, owner):
    from tests.conftest import CLI
    from webapps.actions import do_create_webapp

    do_create_webapp("second.example.com", actor=owner, origin=CLI)
    other = f"/api/v0/user/IronHand/webapps/second.example.com/static_files/{mapping['id']}/"
    assert owner_api.get(other).status_code == 404
    assert owner_api.delete(other).status_code == 404
    assert StaticFileMapping.objects.count() == 1


def test_the_node_lookup_carries_the_mappings(mapping, owner_app, monkeypatch):
    import django.db

    from webapps.management.commands.runnode import webapp_spec

    # The lookup drops stale connections (it runs outside requests); not the test's own.
    monkeypatch.setattr(django.db, "close_old_connections", lambda: None)

    spec = webapp_spec(owner_app.domain)
    assert [(m.url, m.path) for m in spec.static] == [(mapping["url"], mapping["path"])]
