"""The route table as the proxies see it, read from Redis, for "served by" in the Web tab/API.

``published_table()`` is what Redis holds now (what the proxies route by); the table the
database's pool gives is ``routing.pool.tables.committed_table()``, which this app never reads.
A table counts only if its signature verifies with ``trusted_keys()``, as for every reader.
"""

from __future__ import annotations

import functools
import logging

import redis
from django.conf import settings

from routing import InvalidHost, RouteTable, route_key
from routing.keys import trusted_keys_from
from routing.publish import signature_key, table_key
from routing.signing import verified_table
from webapps.redis_client import get_redis

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=4)
def _trusted_keys(var_dir: str, value: str):
    return trusted_keys_from(var_dir, value)


def trusted_keys():
    """The public keys route tables must verify with (``ROUTES_TRUSTED_KEYS``, else the
    machine's under ``VAR_DIR/keys/``), loaded once per process."""
    return _trusted_keys(str(settings.VAR_DIR), settings.ROUTES_TRUSTED_KEYS)


def published_table() -> RouteTable | None:
    """The newest published table, or None when there is none, it does not verify, or Redis
    cannot be read."""
    prefix = settings.REDIS_PREFIX
    try:
        raw, line = get_redis().mget([table_key(prefix), signature_key(prefix)])
    except redis.RedisError as exc:
        log.warning("cannot read the route table from Redis: %s", exc)
        return None
    if raw is None:
        return None
    try:
        return verified_table(raw, line, trusted_keys())[0]
    except ValueError as exc:  # routing's SignatureRefused or InvalidTable
        log.error("the route table in Redis is invalid or not signed by a trusted key: %s", exc)
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
