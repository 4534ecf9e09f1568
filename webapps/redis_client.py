"""The panel's Redis clients: one per URL and settings per process, made by
``routing.connect.sync_client`` (timeouts always set).

``get_redis()`` is the client of the panel's own keys (route table reads, throttles): 2 s to
connect and read, no retries. Other callers in the panel (the pool's publish task and its broker
probe) ask ``client_for`` with their own timeouts and share the cache.
"""

from __future__ import annotations

import functools

import redis
from django.conf import settings

from routing.connect import sync_client


@functools.lru_cache(maxsize=16)
def client_for(
    url: str, *, timeout: float = 2.0, read_timeout: float | None = None, retries: int = 0
) -> redis.Redis:
    # Keyed by URL (and settings) so a test that points REDIS_URL elsewhere gets a matching
    # client, and each keeps its connections open.
    return sync_client(url, timeout=timeout, read_timeout=read_timeout, retries=retries)


def get_redis() -> redis.Redis:
    return client_for(settings.REDIS_URL)
