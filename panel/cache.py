"""Django's Redis cache with its clients made by ``routing.connect``, so the cache takes every
Redis URL the platform does (``sentinel://`` included) with the same timeout rule.

Use it with ``LOCATION`` as a list (``[REDIS_URL]``): Django splits a string on commas, and a
sentinel URL has commas between its sentinels.
"""

from __future__ import annotations

import redis
from django.core.cache.backends.redis import RedisCache, RedisCacheClient

from routing.connect import sync_client


class ConnectedRedisCacheClient(RedisCacheClient):
    def __init__(self, servers, *, timeout: float = 2.0, **options) -> None:
        super().__init__(servers, **options)
        self._timeout = timeout
        self._clients: dict[int, redis.Redis] = {}

    def get_client(self, key=None, *, write: bool = False) -> redis.Redis:
        index = self._get_connection_pool_index(write)
        client = self._clients.get(index)
        if client is None:
            client = self._clients[index] = sync_client(self._servers[index], timeout=self._timeout)
        return client


class ConnectedRedisCache(RedisCache):
    """``BACKEND: panel.cache.ConnectedRedisCache``; ``OPTIONS: {"timeout": seconds}``."""

    def __init__(self, server, params) -> None:
        super().__init__(server, params)
        self._class = ConnectedRedisCacheClient
