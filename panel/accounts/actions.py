"""The base of every action, the audit trail, and the state changes of API tokens.

Every ``do_*`` function of every app has one shape: ``do_x(target..., *, actor, origin)``. It
checks its input (raising ``ActionError`` naming the field, before anything is written), runs in
``transaction.atomic(durable=True)``, writes one audit row in that transaction, and fires its
side effects with ``transaction.on_commit``. ``ActionError`` is the one refusal every app's
actions raise (web apps, tokens and the pool alike); ``audit`` and ``record_denied`` are the one
way a row reaches the trail.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from panel.accounts.models import ApiToken, AuditEvent, User, hash_token
from panel.accounts.origin import Origin

MAX_TOKEN_DAYS = 3650
DEFAULT_TOKEN_DAYS = 90  # a token created without an expiry expires after this many days


class ActionError(ValueError):
    """Input an action refuses; ``field`` names the offending field (API/form/CLI name)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


def audit(
    actor: User | None,
    action: str,
    outcome: str,
    target: str,
    origin: Origin,
    **detail: Any,
) -> AuditEvent:
    """One row of the audit trail (inside the caller's transaction)."""
    return AuditEvent.objects.create(
        **AuditEvent.attribution(actor, origin),
        action=action,
        outcome=outcome,
        target=target[:300],
        detail=detail,
    )


def record_denied(
    actor: User | None, action: str, target: str, origin: Origin, reason: str
) -> AuditEvent:
    """An attempt that was refused (someone else's app, unknown app, someone else's path)."""
    with transaction.atomic():
        return audit(actor, action, AuditEvent.Outcome.DENIED, target, origin, reason=reason)


def do_create_token(
    user: User,
    *,
    actor: User | None,
    origin: Origin,
    name: str = "",
    expires_in_days: int | None = None,
    scope: str = ApiToken.Scope.FULL,
) -> tuple[ApiToken, str]:
    """A new token for ``user``; the key is returned once and only its hash is stored.

    It expires after ``expires_in_days`` (default ``DEFAULT_TOKEN_DAYS``); ``scope`` "reload"
    makes a token that may only reload the user's apps.
    """
    if expires_in_days is None:
        expires_in_days = DEFAULT_TOKEN_DAYS
    if not 1 <= expires_in_days <= MAX_TOKEN_DAYS:
        raise ActionError(f"expiry must be between 1 and {MAX_TOKEN_DAYS} days", "expires_in_days")
    if scope not in ApiToken.Scope.values:
        raise ActionError(
            f"scope {scope!r} is not one of {', '.join(ApiToken.Scope.values)}", "scope"
        )
    if len(name) > 100:
        raise ActionError("the token name is longer than 100 characters", "name")
    key = ApiToken.generate_key()
    now = timezone.now()
    with transaction.atomic(durable=True):
        token = ApiToken.objects.create(
            user=user,
            name=name.strip(),
            prefix=key[:12],
            key_hash=hash_token(key),
            created_at=now,
            expires_at=now + timedelta(days=expires_in_days),
            scope=scope,
        )
        audit(
            actor,
            "token.create",
            AuditEvent.Outcome.OK,
            token.prefix,
            origin,
            name=token.name,
            scope=scope,
            expires_in_days=expires_in_days,
        )
    return token, key


def do_revoke_token(token: ApiToken, *, actor: User | None, origin: Origin) -> ApiToken:
    with transaction.atomic(durable=True):
        if token.revoked_at is None:
            token.revoked_at = timezone.now()
            token.save(update_fields=["revoked_at"])
        audit(actor, "token.revoke", AuditEvent.Outcome.OK, token.prefix, origin)
    return token


__all__ = [
    "DEFAULT_TOKEN_DAYS",
    "MAX_TOKEN_DAYS",
    "ActionError",
    "Origin",
    "audit",
    "do_create_token",
    "do_revoke_token",
    "record_denied",
]
