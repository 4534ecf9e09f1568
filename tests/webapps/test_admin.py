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
