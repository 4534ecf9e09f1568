"""Homes belong to their owners and the panel never writes through a symlink a tenant planted;
limits per user: apps per user, one reload in flight."""

import os
import stat

import pytest
from django.conf import settings

from webapps import throttle
from webapps.models import WebApp
from webapps.node import homefs

pytestmark = pytest.mark.django_db

URL = "/api/v0/user/IronHand/webapps/"


def test_it_writes_the_starter_app_as_the_owner_in_a_0700_home(owner_api, owner):
    assert owner_api.post(URL, {"domain_name": "IronHand.example.com"}).status_code == 201
    home = settings.HOME_ROOT / "ironhand"
    wsgi = home / "ironhand.example.com" / "wsgi.py"
    assert "def application" in wsgi.read_text()
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    if os.geteuid() == 0:  # CI and these machines run as root; a laptop cannot chown
        for path in (home, wsgi.parent, wsgi):
            assert (path.stat().st_uid, path.stat().st_gid) == (owner.uid, owner.gid), path


def test_it_refuses_a_symlink_planted_at_the_apps_directory(owner_api, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    home = settings.HOME_ROOT / "ironhand"
    home.mkdir(parents=True)
    (home / "ironhand.example.com").symlink_to(elsewhere)
    response = owner_api.post(URL, {"domain_name": "IronHand.example.com"})
    assert response.status_code == 400
    assert "symbolic link" in response.json()["detail"]
    assert list(elsewhere.iterdir()) == []
    assert not WebApp.objects.exists()


def test_it_keeps_a_symlink_planted_as_the_wsgi_file_and_writes_nothing_through_it(tmp_path):
    target = tmp_path / "target.py"
    home = tmp_path / "home" / "ann" / "site"
    home.mkdir(parents=True)
    (home / "wsgi.py").symlink_to(target)
    written = homefs.write_new_file(tmp_path / "home", "ann", ["site", "wsgi.py"], b"x")
    assert written is False
    assert not target.exists()


def test_it_refuses_a_symlinked_home(tmp_path):
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "ann").symlink_to(tmp_path)
    with pytest.raises(homefs.HomePathRefused, match="symbolic link"):
        homefs.write_new_file(tmp_path / "home", "ann", ["wsgi.py"], b"x")
    assert not (tmp_path / "wsgi.py").exists()


def test_it_refuses_one_app_more_than_the_limit_naming_it(owner_api, hosting_settings):
    hosting_settings.MAX_APPS_PER_USER = 2
    for domain in ("one.ironhand.org", "two.ironhand.org"):
        assert owner_api.post(URL, {"domain_name": domain}).status_code == 201
    response = owner_api.post(URL, {"domain_name": "three.ironhand.org"})
    assert response.status_code == 400
    assert "MAX_APPS_PER_USER=2" in response.json()["detail"]
    assert WebApp.objects.count() == 2


def test_it_answers_429_to_a_reload_while_another_of_the_user_runs(
    settings, owner_api, owner_app, owner
):
    settings.WEBAPPS_RELOADER = "tests.webapps.support.OkReloader"
    reload_url = f"{URL}ironhand.example.com/reload/"
    with throttle.reload_in_flight(owner.pk) as alone:  # the first reload, still running
        assert alone
        response = owner_api.post(reload_url)
        assert response.status_code == 429
        assert "still running" in response.json()["detail"]
    assert owner_api.post(reload_url).status_code == 200  # once it is done


def test_it_answers_429_in_the_web_tab_too(settings, owner_web, owner_app, owner):
    settings.WEBAPPS_RELOADER = "tests.webapps.support.OkReloader"
    with throttle.reload_in_flight(owner.pk):
        response = owner_web.post("/user/IronHand/webapps/ironhand.example.com/reload/")
    assert response.status_code == 429
    assert "still running" in response.content.decode()
