"""Redis clients from a URL: the one place every process makes them.

Every process that talks to Redis (the panel, the Celery task, the commands, the proxies and the
nodes' subscribers, the benchmarks) gets its client here, so a URL scheme, a timeout rule or a
fail-over mechanism is added once.

Rules:
- Every client has a connect and a read timeout: no wait on Redis is unbounded.
- ``retries=0`` (the default) means redis-py never retries on its own: the caller owns
  reconnecting and its back-off, and a hidden retry would only stretch the time a caller waits on
  a dead server. A retry, where asked for, is immediate.

Pure redis-py, no Django, no settings.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import redis
import redis.asyncio as aioredis
from redis.backoff import NoBackoff
from redis.retry import Retry

__all__ = ["REDIS_SCHEMES", "async_client", "check_redis_url", "sync_client"]

REDIS_SCHEMES = ("redis", "rediss", "unix")
DEFAULT_TIMEOUT = 2.0


def check_redis_url(url: str) -> str:
    """``url`` when it is a Redis URL this module can connect to; else ``ValueError`` saying why."""
    parts = urlsplit(url)
    if parts.scheme not in REDIS_SCHEMES:
        raise ValueError(f"{url!r} must be a redis://, rediss:// or unix:// URL")
    if parts.scheme != "unix":
        try:
            parts.port  # noqa: B018 - raises ValueError on a malformed port
        except ValueError:
            raise ValueError(f"{url!r} has an invalid port") from None
        if not parts.hostname:
            raise ValueError(f"{url!r} has no host")
    return url


def sync_client(
    url: str,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    read_timeout: float | None = None,
    retries: int = 0,
) -> redis.Redis:
    """A blocking client for ``url``: connects wait at most ``timeout``, reads ``read_timeout``
    (default ``timeout``); ``retries`` immediate retries of a failed command."""
    return redis.Redis.from_url(
        check_redis_url(url),
        socket_connect_timeout=timeout,
        socket_timeout=timeout if read_timeout is None else read_timeout,
        retry=Retry(NoBackoff(), max(retries, 0)),
    )


def async_client(
    url: str,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    read_timeout: float | None = None,
    retries: int = 0,
) -> aioredis.Redis:
    """An asyncio client for ``url``, with the same timeouts and retries as ``sync_client``."""
    return aioredis.from_url(
        check_redis_url(url),
        socket_connect_timeout=timeout,
        socket_timeout=timeout if read_timeout is None else read_timeout,
        retry=Retry(NoBackoff(), max(retries, 0)),
    )
