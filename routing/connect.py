"""Redis clients from a URL: the one place every process makes them.

Every process that talks to Redis (the panel, the Celery task, the commands, the proxies and the
nodes' subscribers, the benchmarks) gets its client here, so a URL scheme, a timeout rule or a
fail-over mechanism is added once.

URL forms (``check_redis_url``):
- ``redis://[user:password@]host[:port][/db]``, ``rediss://...`` (TLS), ``unix:///path.sock``;
- ``sentinel://[user:password@]host1[:port],host2[:port],.../<master-name>[/<db>]``
  ``[?sentinel_username=U&sentinel_password=P]``: Redis Sentinel. The hosts are the sentinels
  (port 26379 by default), asked in turn for the current master of ``<master-name>``. The user
  and password in front are the *master's* (the process's own ACL user, as in a redis:// URL);
  sentinels that require their own authentication get it from the query. Clients follow a
  fail-over: every new connection asks the sentinels where the master is, and a connection to a
  demoted master fails (``ConnectionError``) rather than reading from a replica unknowingly.

Rules:
- Every client has a connect and a read timeout: no wait on Redis (or on a sentinel) is
  unbounded.
- ``retries=0`` (the default) means redis-py never retries on its own: the caller owns
  reconnecting and its back-off, and a hidden retry would only stretch the time a caller waits on
  a dead server. A retry, where asked for, is immediate.

Pure redis-py, no Django, no settings.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, quote, unquote, urlsplit

import redis
import redis.asyncio as aioredis
import redis.asyncio.sentinel as aiosentinel
import redis.sentinel
from redis.backoff import NoBackoff
from redis.retry import Retry

from routing.addresses import Address, InvalidAddress, parse_address

__all__ = [
    "REDIS_SCHEMES",
    "SentinelURL",
    "async_client",
    "check_redis_url",
    "kombu_broker",
    "master_moved",
    "parse_sentinel_url",
    "sync_client",
    "with_credentials",
]

REDIS_SCHEMES = ("redis", "rediss", "unix", "sentinel")
DEFAULT_TIMEOUT = 2.0
SENTINEL_PORT = 26379
_SENTINEL_QUERY = ("sentinel_username", "sentinel_password")


@dataclass(frozen=True)
class SentinelURL:
    """A parsed ``sentinel://`` URL (see the module docstring)."""

    sentinels: tuple[Address, ...]
    master: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    sentinel_username: str | None = None
    sentinel_password: str | None = None

    def master_auth(self) -> dict[str, str]:
        """The keyword arguments that authenticate to the master (and its replicas)."""
        auth = {}
        if self.username:
            auth["username"] = self.username
        if self.password:
            auth["password"] = self.password
        return auth

    def sentinel_auth(self) -> dict[str, str]:
        auth = {}
        if self.sentinel_username:
            auth["username"] = self.sentinel_username
        if self.sentinel_password:
            auth["password"] = self.sentinel_password
        return auth


def parse_sentinel_url(url: str) -> SentinelURL:
    """The parts of a ``sentinel://`` URL; ``ValueError`` naming what is wrong."""
    parts = urlsplit(url)
    if parts.scheme != "sentinel":
        raise ValueError(f"{_safe(url)!r} is not a sentinel:// URL")
    userinfo, _, hosts = parts.netloc.rpartition("@")
    if not hosts:
        raise ValueError(f"{_safe(url)!r} names no sentinel (sentinel://host:26379,.../master)")
    sentinels = []
    for raw in hosts.split(","):
        if not raw:
            raise ValueError(f"{_safe(url)!r} has an empty sentinel address")
        # A sentinel without a port listens on the usual one (an IPv6 host is bracketed).
        spelled = raw if ":" in raw and not raw.endswith("]") else f"{raw}:{SENTINEL_PORT}"
        try:
            sentinels.append(parse_address(spelled))
        except InvalidAddress as exc:
            raise ValueError(f"{_safe(url)!r} has an invalid sentinel: {exc}") from None
    segments = [unquote(s) for s in parts.path.split("/")[1:]]
    if segments and segments[-1] == "":
        segments.pop()
    if not segments or not segments[0]:
        raise ValueError(f"{_safe(url)!r} names no master (sentinel://hosts/<master-name>/<db>)")
    if len(segments) > 2:
        raise ValueError(f"{_safe(url)!r} has a path beyond /<master-name>/<db>")
    db = 0
    if len(segments) == 2:
        if not segments[1].isdigit():
            raise ValueError(f"{_safe(url)!r} has a database {segments[1]!r} that is no number")
        db = int(segments[1])
    query = parse_qs(parts.query, keep_blank_values=True, strict_parsing=False)
    unknown = sorted(set(query) - set(_SENTINEL_QUERY))
    if unknown:
        raise ValueError(
            f"{_safe(url)!r} has unknown options {', '.join(unknown)} "
            f"(known: {', '.join(_SENTINEL_QUERY)})"
        )
    username = password = None
    if userinfo:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    return SentinelURL(
        sentinels=tuple(sentinels),
        master=segments[0],
        db=db,
        username=username,
        password=password,
        sentinel_username=query.get("sentinel_username", [None])[-1] or None,
        sentinel_password=query.get("sentinel_password", [None])[-1] or None,
    )


def check_redis_url(url: str) -> str:
    """``url`` when it is a Redis URL this module can connect to; else ``ValueError`` saying why."""
    parts = urlsplit(url)
    if parts.scheme not in REDIS_SCHEMES:
        raise ValueError(
            f"{_safe(url)!r} must be a redis://, rediss://, unix:// or sentinel:// URL"
        )
    if parts.scheme == "sentinel":
        parse_sentinel_url(url)
    elif parts.scheme != "unix":
        try:
            parts.port  # noqa: B018 - raises ValueError on a malformed port
        except ValueError:
            raise ValueError(f"{_safe(url)!r} has an invalid port") from None
        if not parts.hostname:
            raise ValueError(f"{_safe(url)!r} has no host")
    return url


def with_credentials(url: str, username: str, password: str) -> str:
    """``url`` (any form above) with ``username:password`` as its user (the master's, for a
    sentinel URL), replacing any there."""
    check_redis_url(url)
    parts = urlsplit(url)
    hosts = parts.netloc.rpartition("@")[2]
    netloc = f"{quote(username, safe='')}:{quote(password, safe='')}@{hosts}"
    return parts._replace(netloc=netloc).geturl()


def sync_client(
    url: str,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    read_timeout: float | None = None,
    retries: int = 0,
) -> redis.Redis:
    """A blocking client for ``url``: connects wait at most ``timeout``, reads ``read_timeout``
    (default ``timeout``); ``retries`` immediate retries of a failed command."""
    options = _options(timeout, read_timeout, retries)
    if urlsplit(url).scheme == "sentinel":
        spec = parse_sentinel_url(url)
        manager = redis.sentinel.Sentinel(
            [(a.bind_host, a.port) for a in spec.sentinels],
            sentinel_kwargs={**options, **spec.sentinel_auth()},
            **options,
        )
        return manager.master_for(
            spec.master, redis_class=_SyncMaster, db=spec.db, **spec.master_auth()
        )
    return redis.Redis.from_url(check_redis_url(url), **options)


def async_client(
    url: str,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    read_timeout: float | None = None,
    retries: int = 0,
) -> aioredis.Redis:
    """An asyncio client for ``url``, with the same timeouts and retries as ``sync_client``."""
    options = _options(timeout, read_timeout, retries)
    if urlsplit(url).scheme == "sentinel":
        spec = parse_sentinel_url(url)
        manager = aiosentinel.Sentinel(
            [(a.bind_host, a.port) for a in spec.sentinels],
            sentinel_kwargs={**options, **spec.sentinel_auth()},
            **options,
        )
        return manager.master_for(
            spec.master, redis_class=_AsyncMaster, db=spec.db, **spec.master_auth()
        )
    return aioredis.from_url(check_redis_url(url), **options)


async def master_moved(client: aioredis.Redis, connection: object) -> bool:
    """True when ``client`` was made from a sentinel URL and the sentinels now name another
    master than the one ``connection`` (e.g. a ``PubSub``'s) talks to: a fail-over happened
    and a long-lived connection must be remade. False for any other client, and when no
    sentinel answers (the connection itself then fails or goes on working)."""
    pool = client.connection_pool
    if not isinstance(pool, aiosentinel.SentinelConnectionPool):
        return False
    host = getattr(connection, "host", None)
    port = getattr(connection, "port", None)
    if host is None:
        return False
    try:
        master = await pool.sentinel_manager.discover_master(pool.service_name)
    except (redis.ConnectionError, redis.TimeoutError, OSError):
        return False
    return (str(master[0]), int(master[1])) != (str(host), int(port))


def kombu_broker(url: str, *, timeout: float = DEFAULT_TIMEOUT) -> tuple[str, dict[str, object]]:
    """The broker URL and the extra transport options kombu's Redis transport takes for
    ``url``: a ``redis://`` URL as is; a ``sentinel://`` URL in kombu's own form (one
    ``sentinel://user:password@host:port/db`` per sentinel, joined by ``;``) with
    ``master_name`` and ``sentinel_kwargs`` (the sentinels' timeouts, and their user when
    they authenticate)."""
    check_redis_url(url)
    if urlsplit(url).scheme != "sentinel":
        return url, {}
    spec = parse_sentinel_url(url)
    userinfo = ""
    if spec.username or spec.password:
        userinfo = f"{quote(spec.username or '', safe='')}:{quote(spec.password or '', safe='')}@"
    broker = ";".join(f"sentinel://{userinfo}{a}/{spec.db}" for a in spec.sentinels)
    sentinel_kwargs = {
        "socket_connect_timeout": timeout,
        "socket_timeout": timeout,
        **spec.sentinel_auth(),
    }
    return broker, {"master_name": spec.master, "sentinel_kwargs": sentinel_kwargs}


def _options(timeout: float, read_timeout: float | None, retries: int) -> dict[str, object]:
    return {
        "socket_connect_timeout": timeout,
        "socket_timeout": timeout if read_timeout is None else read_timeout,
        "retry": Retry(NoBackoff(), max(retries, 0)),
    }


def _safe(url: str) -> str:
    """``url`` without its password, for messages."""
    parts = urlsplit(url)
    userinfo, at, hosts = parts.netloc.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    return parts._replace(netloc=f"{userinfo.split(':', 1)[0]}:***@{hosts}").geturl()


class _SyncMaster(redis.Redis):
    """The master's client from a sentinel URL; closing it closes the sentinels' clients too."""

    def close(self) -> None:
        manager = getattr(self.connection_pool, "sentinel_manager", None)
        try:
            super().close()
        finally:
            if manager is not None:
                manager.close()


class _AsyncMaster(aioredis.Redis):
    """The asyncio twin of ``_SyncMaster``."""

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        manager = getattr(self.connection_pool, "sentinel_manager", None)
        try:
            await super().aclose(close_connection_pool)
        finally:
            if manager is not None:
                await manager.aclose()
