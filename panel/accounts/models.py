"""Users, their API tokens, and the one audit trail of who changed what, from where.

``Attributed`` is the one definition of "who acted and from where" (actor, the actor's name as
text, via, request id, client address) and ``Attributed.attribution`` the one place those fields
are filled; ``AuditEvent`` and the pool's ``Revision`` are both built on it.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.contrib.auth.models import AbstractUser, UserManager
from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone

if TYPE_CHECKING:
    from panel.accounts.origin import Origin


class CaseInsensitiveUserManager(UserManager):
    """Usernames are unique regardless of case: ``/user/ironhand/`` finds ``IronHand``."""

    def get_by_natural_key(self, username: str):
        return self.get(username__iexact=username)


class User(AbstractUser):
    objects = CaseInsensitiveUserManager()

    class Meta:
        constraints = [
            models.UniqueConstraint(Lower("username"), name="accounts_user_username_ci_unique"),
        ]

    def __str__(self) -> str:
        return self.username


class Via(models.TextChoices):
    UI = "ui", "Web tab"
    API = "api", "API"
    CLI = "cli", "command line"
    ADMIN = "admin", "admin"


TOKEN_PREFIX = "hpk_"


def hash_token(key: str) -> str:
    # Tokens carry 256 bits of randomness, so a fast unsalted hash is enough: there is nothing
    # to brute-force, and a database dump yields only hashes.
    return hashlib.sha256(key.encode()).hexdigest()


class ApiTokenQuerySet(models.QuerySet):
    def usable(self, now: datetime | None = None):
        now = now or timezone.now()
        return self.filter(revoked_at__isnull=True).filter(
            models.Q(expires_at__isnull=True) | models.Q(expires_at__gt=now)
        )


class ApiToken(models.Model):
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100, blank=True)
    # The first characters of the key, shown so people can tell their tokens apart.
    prefix = models.CharField(max_length=16)
    key_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = ApiTokenQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user})"

    @staticmethod
    def generate_key() -> str:
        return TOKEN_PREFIX + secrets.token_urlsafe(32)

    def is_usable(self, now: datetime | None = None) -> bool:
        now = now or timezone.now()
        if self.revoked_at is not None:
            return False
        return self.expires_at is None or self.expires_at > now

    @property
    def state(self) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= timezone.now():
            return "expired"
        return "active"


class Attributed(models.Model):
    """Who acted and from where: the fields every record of a change carries."""

    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    # Kept as text so the record still reads after the user is gone.
    actor_username = models.CharField(max_length=150, blank=True)
    via = models.CharField(max_length=8, choices=Via.choices)
    request_id = models.CharField(max_length=100, blank=True)
    client_ip = models.GenericIPAddressField(null=True, blank=True)

    class Meta:
        abstract = True

    @staticmethod
    def attribution(actor: User | None, origin: Origin) -> dict[str, Any]:
        """The values of these fields for ``actor`` acting from ``origin`` (actor may be None:
        the command line, the system)."""
        return {
            "actor": actor if actor is not None and actor.pk else None,
            "actor_username": getattr(actor, "username", "") or "",
            "via": origin.via,
            "request_id": origin.request_id,
            "client_ip": origin.client_ip,
        }


class AuditEvent(Attributed):
    class Outcome(models.TextChoices):
        OK = "ok", "done"
        DENIED = "denied", "denied"
        FAILED = "failed", "failed"

    action = models.CharField(max_length=32)
    outcome = models.CharField(max_length=8, choices=Outcome.choices)
    # Kept as text so the trail still reads after the app or token is gone.
    target = models.CharField(max_length=300, blank=True)
    detail = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["action", "-created_at"], name="accounts_audit_action_time")
        ]

    def __str__(self) -> str:
        return f"{self.actor_username or '-'} {self.action} {self.target}: {self.outcome}"
