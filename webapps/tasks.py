"""Celery tasks of web apps' HTTPS: thin, idempotent, taking ids (``webapps.tls`` does the work).

- ``webapps.publish_certificates``: the certificate bundle and the challenge document as the
  database has them (beat runs it every ``ROUTES_REPUBLISH_SECONDS``; same content, no new
  version);
- ``webapps.order_certificate(cert_id)``: one order, queued when an automatic certificate is
  asked for (a second one for the same domain while the first runs does nothing);
- ``webapps.renew_certificates``: every due certificate (beat, every
  ``ACME_RENEW_CHECK_SECONDS``).
"""

from __future__ import annotations

import logging

import redis
from celery import shared_task
from kombu.exceptions import OperationalError

from routing.certs import CERTS, CHALLENGES
from webapps import tls

logger = logging.getLogger(__name__)


def enqueue(task, *args) -> bool:
    """Queue ``task`` without waiting on a broker that is down: the beat's periodic run (due
    certificates, republish) does the work then."""
    try:
        task.apply_async(args, retry=False)
    except (OperationalError, redis.RedisError, OSError) as exc:
        logger.warning("could not queue %s (%s); the periodic run will do it", task.name, exc)
        return False
    return True


@shared_task(name="webapps.publish_certificates", ignore_result=True, acks_late=True)
def publish_certificates() -> dict[str, int | None]:
    return {kind.name: tls.publish(kind) for kind in (CERTS, CHALLENGES)}


@shared_task(name="webapps.order_certificate", ignore_result=True, acks_late=True)
def order_certificate(cert_id: int) -> str:
    row = tls.order(cert_id)
    if row is None:
        return "skipped"
    return "failed" if row.last_error else "issued"


@shared_task(name="webapps.renew_certificates", ignore_result=True, acks_late=True)
def renew_certificates() -> dict[str, int]:
    return tls.renew_due()
