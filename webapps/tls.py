"""HTTPS per domain: the actions on an app's certificate, the signed documents the proxies read
(``routing.certs``), and ordering and renewing automatic certificates (``webapps.acme``).

Actions have the one shape of ``webapps.actions``: input checked first, one durable transaction
with its audit row, side effects after commit. After every change to what the proxies must
know (a certificate, ``force_https``) the certificate bundle is published once the transaction
commits; Celery beat republishes it every ``ROUTES_REPUBLISH_SECONDS`` (a publish lost while
Redis was down is repaired within one period) and only content that differs makes a new
version.

Secrets: a private key is sealed to the proxies' public key (``routing.sealed``) before
anything is stored; the panel never holds the key that opens it, and nothing here logs a key or
puts one in an audit row or an error message (decision 0091).

Automatic certificates (decision 0092): at most one order per domain at a time (``claim``),
every order with a fresh key, a failure recorded in plain words with an exponential back-off
(``ACME_RETRY_SECONDS`` doubling up to ``ACME_RETRY_MAX_SECONDS``) and the old certificate left
in place, a certificate due ``ACME_RENEW_DAYS_BEFORE`` days before ``not_after`` (or at two
thirds of a lifetime shorter than twice that).
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

import redis
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from panel.accounts.actions import ActionError, audit
from panel.accounts.models import AuditEvent, User
from panel.accounts.origin import Origin
from routing import InvalidHost, canonical_host
from routing.certs import CERTS, CHALLENGES, CertBundle, CertEntry, Challenges, Kind
from routing.certs import publish_document as _publish_document
from routing.keys import signing_key_from
from routing.sealed import public_key_from, seal
from webapps import acme
from webapps.certificates import CertificateError, CertInfo, check_upload, describe, parse_chain
from webapps.models import AcmeChallenge, Certificate, ProxyDocument, WebApp
from webapps.redis_client import get_redis

log = logging.getLogger(__name__)
SYSTEM = Origin(via="cli")

__all__ = [
    "do_delete_certificate",
    "do_request_auto_certificate",
    "do_set_certificate",
    "order",
    "publish",
    "renew_due",
]


# --- the documents the proxies read ---------------------------------------------------------


def signing_key():
    return signing_key_from(settings.VAR_DIR, settings.ROUTES_SIGNING_KEY_FILE)


def sealing_key():
    return public_key_from(settings.VAR_DIR, settings.TLS_KEYS_PUBLIC)


def certificates_body() -> dict:
    rows = (
        Certificate.objects.exclude(chain="")
        .exclude(sealed_key="")
        .select_related("webapp")
        .order_by("webapp__domain")
    )
    entries = [
        CertEntry(
            domain=row.webapp.domain,
            chain=row.chain,
            key=row.sealed_key,
            not_after=row.not_after.isoformat(),
            serial=row.serial,
        )
        for row in rows
    ]
    forced = WebApp.objects.filter(force_https=True).values_list("domain", flat=True)
    return CertBundle.body(entries, list(forced))


def challenges_body() -> dict:
    now = timezone.now()
    AcmeChallenge.objects.filter(expires_at__lt=now).delete()
    rows = AcmeChallenge.objects.order_by("token").values_list("token", "key_authorization")
    return Challenges.body(dict(rows))


BODIES = {CERTS.name: certificates_body, CHALLENGES.name: challenges_body}


def publish(kind: Kind = CERTS) -> int | None:
    """Publish the document of ``kind`` as the database has it now; the version stored, or
    None when Redis already held that content. The document's row lock serialises publishers,
    so the content published last is the newest committed. ``redis.RedisError`` propagates."""
    key = signing_key()
    with transaction.atomic():
        row, _ = ProxyDocument.objects.select_for_update().get_or_create(name=kind.name)
        body = BODIES[kind.name]()
        version = _publish_document(
            get_redis(), kind, body, settings.REDIS_PREFIX, signing_key=key, floor=row.version
        )
        if version is not None:
            row.version = version
            row.save(update_fields=["version"])
    return version


def _publish_quietly(kind: Kind) -> None:
    try:
        publish(kind)
    except (redis.RedisError, OSError) as exc:
        log.warning(
            "could not publish the %s document (%s); the periodic republish will within %s s",
            kind.name,
            exc,
            settings.ROUTES_REPUBLISH_SECONDS,
        )


def publish_soon(kind: Kind = CERTS) -> None:
    """Publish once the surrounding transaction commits (at once outside one)."""
    transaction.on_commit(lambda: _publish_quietly(kind))


# --- uploaded certificates -------------------------------------------------------------------


def _fill(row: Certificate, info: CertInfo, sealed: str) -> None:
    row.chain = info.chain_pem
    row.sealed_key = sealed
    row.serial = info.serial
    row.not_before = info.not_before
    row.not_after = info.not_after
    row.issuer_name = info.issuer_name[:500]
    row.subject_name = info.subject_name[:500]
    row.subject_alternate_names = info.subject_alternate_names


def do_set_certificate(
    webapp: WebApp, cert: object, private_key: object, *, actor: User, origin: Origin
) -> Certificate:
    """Install an uploaded certificate and key for the app's domain (replacing any other)."""
    try:
        info, key_pem = check_upload(cert, private_key, webapp.domain, timezone.now())
    except CertificateError as exc:
        raise ActionError(exc.message, exc.field) from None
    sealed = seal(sealing_key(), key_pem, webapp.domain)
    del key_pem
    with transaction.atomic(durable=True):
        row = Certificate.objects.select_for_update().filter(webapp=webapp).first()
        row = row or Certificate(webapp=webapp)
        row.cert_type = Certificate.Type.MANUAL
        _fill(row, info, sealed)
        row.renew_after = row.next_attempt_at = row.last_error_at = row.ordering_since = None
        row.failures = 0
        row.last_error = ""
        row.issued_at = timezone.now()
        row.save()
        audit(actor, "webapp.ssl.set", AuditEvent.Outcome.OK, webapp.domain, origin,
              cert_type=row.cert_type, serial=info.serial,
              not_after=info.not_after.isoformat())  # fmt: skip
        publish_soon()
    return row


def do_delete_certificate(webapp: WebApp, *, actor: User, origin: Origin) -> bool:
    """Remove the app's certificate (the platform's is presented again); False if none."""
    with transaction.atomic(durable=True):
        deleted, _ = Certificate.objects.filter(webapp=webapp).delete()
        audit(actor, "webapp.ssl.delete", AuditEvent.Outcome.OK, webapp.domain, origin,
              deleted=bool(deleted))  # fmt: skip
        if deleted:
            publish_soon()
    return bool(deleted)


# --- automatic certificates ------------------------------------------------------------------


def orderable(domain: str) -> str:
    """Why ``domain`` may not be ordered (before any ACME call), or "" when it may."""
    if not settings.ACME_DIRECTORY_URL:
        return "automatic certificates are not set up on this platform (no ACME_DIRECTORY_URL)"
    try:
        panel = canonical_host(settings.PANEL_HOST)
    except InvalidHost:
        panel = settings.PANEL_HOST
    if domain == panel:
        return f"{domain} is the control panel's own address"
    if not WebApp.objects.filter(domain=domain).exists():
        return f"{domain} belongs to no web app"
    return ""


def _start_automatic(webapp: WebApp) -> Certificate:
    """Inside the caller's transaction: make the app's certificate automatic and due now."""
    row = Certificate.objects.select_for_update().filter(webapp=webapp).first()
    row = row or Certificate(webapp=webapp)
    row.cert_type = Certificate.Type.AUTO
    row.renew_after = timezone.now()
    row.next_attempt_at = None
    row.failures = 0
    row.last_error = ""
    row.save()
    transaction.on_commit(lambda: queue_order(row.pk))
    return row


def do_request_auto_certificate(webapp: WebApp, *, actor: User, origin: Origin) -> Certificate:
    """Ask for an automatic certificate (``cert_type: letsencrypt-auto-renew``): the order is
    queued after commit; a certificate already installed stays until the new one arrives."""
    why = orderable(webapp.domain)
    if why:
        raise ActionError(why, "cert_type")
    with transaction.atomic(durable=True):
        row = _start_automatic(webapp)
        audit(actor, "webapp.ssl.auto", AuditEvent.Outcome.OK, webapp.domain, origin)
    return row


def automatic_for_new_app(webapp: WebApp) -> None:
    """Called by ``do_create_webapp`` inside its transaction: with ``TLS_AUTO_FOR_NEW_APPS``
    on (and ACME configured), every new app gets an automatic certificate."""
    if settings.TLS_AUTO_FOR_NEW_APPS and settings.ACME_DIRECTORY_URL:
        _start_automatic(webapp)


def queue_order(cert_id: int) -> None:
    from webapps.tasks import enqueue, order_certificate

    enqueue(order_certificate, cert_id)


def _renew_after(not_before: datetime, not_after: datetime) -> datetime:
    before = timedelta(days=settings.ACME_RENEW_DAYS_BEFORE)
    lifetime = not_after - not_before
    if lifetime <= 2 * before:
        return not_before + lifetime * 2 / 3
    return not_after - before


def _backoff(failures: int) -> timedelta:
    seconds = settings.ACME_RETRY_SECONDS * 2 ** max(0, failures - 1)
    return timedelta(seconds=min(seconds, settings.ACME_RETRY_MAX_SECONDS))


def config() -> acme.AcmeConfig:
    return acme.AcmeConfig(
        directory=settings.ACME_DIRECTORY_URL,
        account_key_file=settings.ACME_ACCOUNT_KEY_FILE,
        ca_bundle=settings.ACME_CA_BUNDLE,
        email=settings.ACME_EMAIL,
        timeout=float(settings.ACME_ORDER_TIMEOUT),
        settle_seconds=settings.ACME_CHALLENGE_SETTLE_MS / 1000,
    )


def claim(cert_id: int, now: datetime) -> bool:
    """Take the one order slot of this certificate's domain; False when an order is in flight
    (one that started over twice the order timeout ago counts as dead)."""
    stale = now - timedelta(seconds=2 * settings.ACME_ORDER_TIMEOUT)
    taken = (
        Certificate.objects.filter(pk=cert_id, cert_type=Certificate.Type.AUTO)
        .filter(Q(ordering_since__isnull=True) | Q(ordering_since__lt=stale))
        .update(ordering_since=now)
    )
    return taken == 1


def _challenge_publisher(domain: str):
    def publish_tokens(answers: dict[str, str]) -> None:
        expires = timezone.now() + timedelta(seconds=settings.ACME_ORDER_TIMEOUT + 60)
        with transaction.atomic():
            for token, answer in answers.items():
                AcmeChallenge.objects.update_or_create(
                    token=token,
                    defaults={"key_authorization": answer, "domain": domain,
                              "expires_at": expires},
                )  # fmt: skip
        try:
            publish(CHALLENGES)
        except (redis.RedisError, OSError) as exc:
            raise acme.AcmeFailure(
                "internal", f"the proxies could not be given the challenge (Redis: {exc})"
            ) from None

    def withdraw(tokens: list[str]) -> None:
        AcmeChallenge.objects.filter(token__in=tokens).delete()
        _publish_quietly(CHALLENGES)

    return publish_tokens, withdraw


def _fail(cert_id: int, domain: str, message: str, now: datetime) -> Certificate:
    with transaction.atomic(durable=True):
        row = Certificate.objects.select_for_update().get(pk=cert_id)
        row.failures += 1
        row.last_error = message[:2000]
        row.last_error_at = now
        row.next_attempt_at = now + _backoff(row.failures)
        row.ordering_since = None
        row.save()
        audit(None, "webapp.ssl.order", AuditEvent.Outcome.FAILED, domain, SYSTEM,
              message=row.last_error, failures=row.failures,
              next_attempt_at=row.next_attempt_at.isoformat())  # fmt: skip
    log.warning("certificate order for %s failed (%d in a row): %s", domain, row.failures,
                message)  # fmt: skip
    return row


def order(cert_id: int, *, now: datetime | None = None) -> Certificate | None:
    """Order (or renew) one automatic certificate now; None when its domain already has an
    order in flight or it is no longer automatic. Failures are recorded, never raised."""
    now = now or timezone.now()
    if not claim(cert_id, now):
        return None
    row = Certificate.objects.select_related("webapp").get(pk=cert_id)
    domain = row.webapp.domain
    why = orderable(domain)
    if why:
        return _fail(cert_id, domain, why, now)
    publish_tokens, withdraw = _challenge_publisher(domain)
    try:
        issued = acme.order_certificate(domain, config(), publish=publish_tokens, withdraw=withdraw)
        info = describe(parse_chain(issued.chain_pem))
        sealed = seal(sealing_key(), issued.key_pem, domain)
    except acme.AcmeFailure as exc:
        return _fail(cert_id, domain, exc.message, now)
    except (CertificateError, ValueError) as exc:
        return _fail(cert_id, domain, f"the certificate authority sent an unusable chain: {exc}",
                     now)  # fmt: skip
    with transaction.atomic(durable=True):
        row = Certificate.objects.select_for_update().get(pk=cert_id)
        if row.cert_type != Certificate.Type.AUTO:
            row.ordering_since = None
            row.save(update_fields=["ordering_since"])
            return row  # switched to an upload meanwhile: that one wins
        _fill(row, info, sealed)
        row.renew_after = _renew_after(info.not_before, info.not_after)
        row.failures = 0
        row.last_error = ""
        row.next_attempt_at = row.last_error_at = row.ordering_since = None
        row.issued_at = timezone.now()
        row.save()
        audit(None, "webapp.ssl.order", AuditEvent.Outcome.OK, domain, SYSTEM,
              serial=info.serial, not_after=info.not_after.isoformat())  # fmt: skip
        publish_soon()
    return row


def due(now: datetime, *, force: bool = False) -> list[int]:
    """Automatic certificates whose renewal is due at ``now`` (or all of them with ``force``),
    none whose back-off has not passed and none with an order in flight."""
    rows = Certificate.objects.filter(cert_type=Certificate.Type.AUTO, ordering_since__isnull=True)
    if not force:
        horizon = now + timedelta(days=settings.ACME_RENEW_DAYS_BEFORE)
        rows = rows.filter(
            Q(not_after__isnull=True) | Q(renew_after__lte=now) | Q(not_after__lte=horizon)
        ).filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
    return list(rows.order_by("not_after").values_list("pk", flat=True))


def _order_in_thread(cert_id: int, now: datetime) -> Certificate | None:
    try:
        return order(cert_id, now=now)
    finally:
        connection.close()  # each worker thread has its own connection


def renew_due(*, now: datetime | None = None, force: bool = False) -> dict[str, int]:
    """Order every due certificate, ``ACME_RENEW_CONCURRENCY`` at a time; a count by outcome."""
    now = now or timezone.now()
    ids = due(now, force=force)
    outcome = {"due": len(ids), "renewed": 0, "failed": 0, "skipped": 0}
    if not ids:
        return outcome
    workers = min(settings.ACME_RENEW_CONCURRENCY, len(ids))
    if connection.vendor == "sqlite" and connection.is_in_memory_db():
        # An in-memory SQLite (the test database) locks whole tables across connections and
        # never waits: orders run one after another on this thread's connection.
        rows = [order(pk, now=now) for pk in ids]
    else:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="acme") as pool:
            rows = list(pool.map(lambda pk: _order_in_thread(pk, now), ids))
    for row in rows:
        if row is None:
            outcome["skipped"] += 1
        elif row.last_error:
            outcome["failed"] += 1
        else:
            outcome["renewed"] += 1
    return outcome
