"""One Redis client per process for the panel's own keys (route table reads, throttles)."""

from __future__ import annotations

import functools

import redis
from django.conf import settings


@functools.cache
def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)


def get_redis() -> redis.Redis:
    # Keyed by URL so a test that points REDIS_URL elsewhere gets a matching client.
    return _client(settings.REDIS_URL)
