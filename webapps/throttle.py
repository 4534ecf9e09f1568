"""Per-user reload throttle, counted in Redis so every panel process on every node agrees.

Keyed by the authenticated user's id, never by anything the client sends (X-Forwarded-For
rotates freely). A fixed one-minute window: INCR and EXPIRE run in one Lua script, so the
count is atomic and a key can never be left without its expiry.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import Iterator
from dataclasses import dataclass

import redis
from django.conf import settings

from webapps.redis_client import get_redis

log = logging.getLogger(__name__)

WINDOW_SECONDS = 60

_HIT = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
local ttl = redis.call('TTL', KEYS[1])
if ttl < 0 then redis.call('EXPIRE', KEYS[1], ARGV[1]); ttl = tonumber(ARGV[1]) end
return {count, ttl}
"""


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    retry_after: int  # seconds until the window ends (meaningful when not allowed)


def hit_reload(user_id: int) -> Verdict:
    """Count one reload for ``user_id``; allowed while within RELOAD_THROTTLE_PER_MINUTE."""
    key = f"{settings.REDIS_PREFIX}throttle:reload:{user_id}"
    try:
        count, ttl = get_redis().eval(_HIT, 1, key, WINDOW_SECONDS)
    except redis.RedisError as exc:
        # Failing open keeps Reload working while Redis is down (the proxies then run on
        # their last known table anyway); the outage is logged, not hidden.
        log.warning("reload throttle unavailable, allowing: %s", exc)
        return Verdict(allowed=True, retry_after=0)
    allowed = int(count) <= settings.RELOAD_THROTTLE_PER_MINUTE
    return Verdict(allowed=allowed, retry_after=max(1, int(ttl)))


# One reload in flight per user: a key held while it runs, with an expiry beyond the longest
# reload (the node's answer timeout), released only by its holder.
IN_FLIGHT_SECONDS = 120
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@contextlib.contextmanager
def reload_in_flight(user_id: int) -> Iterator[bool]:
    """Yields True when no other reload of ``user_id`` runs (and holds the slot), else False."""
    key = f"{settings.REDIS_PREFIX}reload:in-flight:{user_id}"
    token = secrets.token_hex(8)
    try:
        acquired = bool(get_redis().set(key, token, nx=True, ex=IN_FLIGHT_SECONDS))
    except redis.RedisError as exc:
        log.warning("reload in-flight guard unavailable, allowing: %s", exc)
        yield True
        return
    try:
        yield acquired
    finally:
        if acquired:
            with contextlib.suppress(redis.RedisError):
                get_redis().eval(_RELEASE, 1, key, token)
