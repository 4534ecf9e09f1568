"""The route table as the proxies see it, read from Redis, for "served by" in the Web tab/API.

``published_table()`` is what Redis holds now (what the proxies route by); the table the
database's pool gives is ``routing.pool.tables.committed_table()``, which this app never reads.
"""

from __future__ import annotations

import logging

import redis
from django.conf import settings

from routing import InvalidHost, RouteTable, route_key
from routing.publish import table_key
from webapps.redis_client import get_redis

log = logging.getLogger(__name__)


def published_table() -> RouteTable | None:
    """The newest published table, or None when there is none or Redis cannot be read."""
    try:
        raw = get_redis().get(table_key(settings.REDIS_PREFIX))
    except redis.RedisError as exc:
        log.warning("cannot read the route table from Redis: %s", exc)
        return None
    if raw is None:
        return None
    try:
        return RouteTable.from_json(raw)
    except ValueError as exc:  # routing's InvalidTable
        log.error("the route table in Redis is invalid: %s", exc)
        return None


def serving_backend(table: RouteTable | None, domain: str) -> str:
    """The name of the backend that serves ``domain`` now, or "" when none does."""
    if table is None:
        return ""
    try:
        key = route_key(domain, "/", settings.PANEL_HOST)
    except InvalidHost:
        return ""
    backend = table.backend_for(key)
    return backend.name if backend is not None else ""
