import os

import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from panel import env


def test_it_uses_the_private_redis_started_for_the_run():
    assert os.environ["REDIS_URL"] == settings.REDIS_URL
    assert settings.CELERY_BROKER_URL == settings.REDIS_URL


@pytest.mark.parametrize("raw", ["maybe", "2", "yes please"])
def test_it_rejects_a_boolean_it_cannot_read(monkeypatch, raw):
    monkeypatch.setenv("SOME_FLAG", raw)
    with pytest.raises(ImproperlyConfigured, match="SOME_FLAG"):
        env.env_bool("SOME_FLAG", False)


@pytest.mark.parametrize(("raw", "expected"), [("1", True), ("off", False), ("Yes", True)])
def test_it_reads_booleans(monkeypatch, raw, expected):
    monkeypatch.setenv("SOME_FLAG", raw)
    assert env.env_bool("SOME_FLAG", not expected) is expected


def test_it_rejects_an_integer_below_its_minimum(monkeypatch):
    monkeypatch.setenv("SOME_INT", "0")
    with pytest.raises(ImproperlyConfigured, match="below the minimum"):
        env.env_int("SOME_INT", 5, minimum=1)


@pytest.mark.parametrize(
    "raw", ["http://127.0.0.1:6379/0", "redis://127.0.0.1:notaport/0", "redis:///0"]
)
def test_it_rejects_a_bad_redis_url(monkeypatch, raw):
    monkeypatch.setenv("REDIS_URL_X", raw)
    with pytest.raises(ImproperlyConfigured, match="REDIS_URL_X"):
        env.env_redis_url("REDIS_URL_X", "redis://127.0.0.1:6379/0")


def test_it_accepts_a_redis_url_with_password_and_db(monkeypatch):
    monkeypatch.setenv("REDIS_URL_X", "redis://:secret@127.0.0.1:6390/2")
    assert env.env_redis_url("REDIS_URL_X", "") == "redis://:secret@127.0.0.1:6390/2"


def test_it_accepts_a_sentinel_url(monkeypatch):
    url = "sentinel://panel:pw@10.0.0.1:26379,10.0.0.2:26379/hosting/0"
    monkeypatch.setenv("REDIS_URL_X", url)
    assert env.env_redis_url("REDIS_URL_X", "redis://127.0.0.1:6379/0") == url


def test_it_rejects_a_sentinel_url_without_a_master(monkeypatch):
    monkeypatch.setenv("REDIS_URL_X", "sentinel://10.0.0.1:26379")
    with pytest.raises(ImproperlyConfigured, match=r"REDIS_URL_X=.*names no master"):
        env.env_redis_url("REDIS_URL_X", "redis://127.0.0.1:6379/0")
