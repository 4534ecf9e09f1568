"""Celery: publish the route table from the database to Redis.

``publish_routes`` reads the pool when it runs, not when it was queued, and writes through the
store-if-newer script, so it is idempotent and order-insensitive: a late, repeated or periodic
run can only store the newest committed table or change nothing. Beat runs it every
``ROUTES_REPUBLISH_SECONDS`` (anti-entropy: a publish lost while Redis or the broker was down,
or a Redis that lost its data, is repaired within one period) and each worker queues one run
when it starts.

Every table is signed with the process's signing key (``ROUTES_SIGNING_KEY_FILE``, else the
machine's pair under ``VAR_DIR/keys/``), and a stored table counts only if it verifies with
``ROUTES_TRUSTED_KEYS`` (else the machine's public key): a forgery in Redis never blocks a
publish. Keys are loaded once per process.
"""

from __future__ import annotations

import functools
import logging

import redis
from celery import shared_task
from celery.contrib.django.task import DjangoTask
from django.conf import settings
from django.db import transaction
from kombu.exceptions import OperationalError

from routing.keys import signing_key_from
from routing.pool.tables import committed_table
from routing.publish import publish_table, stored_version
from webapps import routes
from webapps.redis_client import client_for

logger = logging.getLogger(__name__)


class PublishTask(DjangoTask):
    """A task whose ``delay_on_commit`` never fails the committed change it follows.

    When the broker is unreachable the change is already committed; queueing fails fast (no
    retries that would hold the admin's request) and the periodic republish publishes it.
    """

    def delay_on_commit(self, *args, **kwargs) -> None:
        transaction.on_commit(functools.partial(self.enqueue, *args, **kwargs))

    def enqueue(self, *args, **kwargs) -> bool:
        try:
            _check_broker(self.app.conf.broker_url)
            self.apply_async(args, kwargs, retry=False)
        except (OperationalError, redis.RedisError, OSError) as exc:
            logger.warning(
                "could not queue %s (%s); the periodic republish will publish within %s s",
                self.name,
                exc,
                settings.ROUTES_REPUBLISH_SECONDS,
            )
            return False
        return True


def _probe_client(url: str) -> redis.Redis:
    # No retries: the broker's own client retries a refused connection for seconds; this probe
    # answers at once. Kept per URL so a probe costs one PING on an open connection.
    return client_for(url, timeout=1)


def _check_broker(url: str) -> None:
    """Raise ``redis.RedisError`` at once when a Redis broker does not answer, so a change made
    while Redis is down returns promptly instead of waiting out the broker's retries."""
    if url.startswith(("redis://", "rediss://", "unix://")):
        _probe_client(url).ping()


def redis_client() -> redis.Redis:
    """The publisher's client for ROUTES_REDIS_URL (shared; keeps its connections open). One
    quick retry, no backoff: a caller (a task, a command) fails within seconds when Redis is
    down, and the next periodic run tries again."""
    return client_for(settings.ROUTES_REDIS_URL, timeout=2, read_timeout=5, retries=1)


@functools.lru_cache(maxsize=4)
def _signing_key(var_dir: str, path_value: str):
    return signing_key_from(var_dir, path_value)


def signing_key():
    """This process's route-table signing key (loaded once; made under VAR_DIR if missing)."""
    return _signing_key(str(settings.VAR_DIR), settings.ROUTES_SIGNING_KEY_FILE)


# The public keys a stored table must verify with to count (one, or two while rotating).
trusted_keys = routes.trusted_keys


@shared_task(
    base=PublishTask,
    name="routing.publish_routes",
    acks_late=True,
    ignore_result=True,
)
def publish_routes(version: int | None = None) -> int | None:
    """Publish the committed pool; ``version`` (the change that queued it) is only logged.

    Returns the published version, or None when Redis already held it (or a newer one).
    """
    table = committed_table()
    if table.version == 0:
        logger.info("no pool change committed yet; nothing to publish")
        return None
    client = redis_client()
    trusted = trusted_keys()
    if publish_table(
        client, table, settings.REDIS_PREFIX, signing_key=signing_key(), trusted_keys=trusted
    ):
        logger.info("published route table version %d (queued for %s)", table.version, version)
        return table.version
    held = stored_version(client, settings.REDIS_PREFIX, trusted_keys=trusted)
    if held is not None and held > table.version:
        # Proxies keep the newer table and never see this database's changes: an operator must
        # decide (a restored database backup, or a second panel writing the same prefix).
        logger.error(
            "Redis holds route table version %d, newer than the database's %d; changes are not "
            "reaching the proxies. Run `manage.py routing publish --bump` to move past it.",
            held,
            table.version,
        )
    return None


def queue_publish_on_worker_start(sender=None, **kwargs) -> None:
    """``worker_ready`` receiver: a starting worker publishes the pool once, without waiting
    for the first beat period (connected in ``routing.pool.apps.RoutingConfig.ready``)."""
    publish_routes.enqueue()
