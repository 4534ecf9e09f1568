"""The Web tab lists, adds, edits and removes static files mappings with plain forms."""

import pytest

from webapps.models import StaticFileMapping

pytestmark = pytest.mark.django_db

DETAIL = "/user/IronHand/webapps/ironhand.example.com/"
STATIC = DETAIL + "static_files/"


@pytest.fixture
def home(settings, owner):
    home = settings.HOME_ROOT / "ironhand"
    (home / "site" / "static").mkdir(parents=True)
    return home


def test_it_adds_edits_and_removes_a_mapping(owner_web, owner_app, home):
    response = owner_web.post(
        STATIC, {"op": "add", "new-url": "/static/", "new-path": "site/static"}
    )
    assert response.status_code == 302
    mapping = StaticFileMapping.objects.get()
    assert mapping.path == str(home.resolve() / "site/static")
    page = owner_web.get(DETAIL).content.decode()
    assert 'value="/static/"' in page
    prefix = f"m{mapping.pk}"
    owner_web.post(
        STATIC,
        {"op": "edit", "id": mapping.pk, f"{prefix}-url": "/assets/",
         f"{prefix}-path": "site/static", f"{prefix}-cache_control": "no-cache"},
    )  # fmt: skip
    mapping.refresh_from_db()
    assert (mapping.url, mapping.cache_control) == ("/assets/", "no-cache")
    owner_web.post(STATIC, {"op": "remove", "id": mapping.pk})
    assert not StaticFileMapping.objects.exists()


def test_it_shows_why_a_mapping_is_refused(owner_web, owner_app, home):
    response = owner_web.post(
        STATIC, {"op": "add", "new-url": "/static/", "new-path": "/etc"}, follow=True
    )
    assert "outside your home" in response.content.decode()
    assert not StaticFileMapping.objects.exists()


def test_the_outsider_gets_404(outsider_web, owner_app, home):
    response = outsider_web.post(STATIC, {"op": "add", "new-url": "/s/", "new-path": "/tmp"})
    assert response.status_code == 404
    assert not StaticFileMapping.objects.exists()
