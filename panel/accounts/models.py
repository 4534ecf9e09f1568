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
from django.db import IntegrityError, models, transaction
from django.db.models.functions import Lower
from django.utils import timezone

if TYPE_CHECKING:
    from panel.accounts.origin import Origin


class CaseInsensitiveUserManager(UserManager):
    """Usernames are unique regardless of case: ``/user/ironhand/`` finds ``IronHand``."""

    def get_by_natural_key(self, username: str):
        return self.get(username__iexact=username)


class UidRangeExhausted(RuntimeError):
    """Every uid of OWNER_UID_MIN..OWNER_UID_MAX is taken."""


class User(AbstractUser):
    # The numeric identity the user's apps run as on every node (gid: the same number),
    # allocated once from OWNER_UID_MIN..OWNER_UID_MAX when the user is first saved.
    uid = models.PositiveIntegerField(null=True, blank=True, unique=True, editable=False)

    objects = CaseInsensitiveUserManager()

    class Meta:
        constraints = [
            models.UniqueConstraint(Lower("username"), name="accounts_user_username_ci_unique"),
        ]

    def __str__(self) -> str:
        return self.username

    @property
    def gid(self) -> int | None:
        return self.uid

    def save(self, *args, **kwargs) -> None:
        if self.uid is not None:
            super().save(*args, **kwargs)
            return
        for _ in range(20):  # two users saved at once may pick the same uid: the index decides
            self.uid = next_free_uid()
            try:
                with transaction.atomic():
                    super().save(*args, **kwargs)
                return
            except IntegrityError:
                if not User.objects.filter(uid=self.uid).exists():
                    self.uid = None
                    raise  # another constraint (the username)
                self.uid = None
        raise UidRangeExhausted("could not allocate a uid after 20 attempts")


def next_free_uid() -> int:
    """The lowest uid of the owner range above every allocated one, or the first gap."""
    low, high = settings.OWNER_UID_MIN, settings.OWNER_UID_MAX
    taken = User.objects.filter(uid__gte=low, uid__lte=high)
    top = taken.aggregate(top=models.Max("uid"))["top"]
    if top is None:
        return low
    if top < high:
        return top + 1
    used = set(taken.values_list("uid", flat=True))
    for candidate in range(low, high + 1):
        if candidate not in used:
            return candidate
    raise UidRangeExhausted(
        f"every uid of OWNER_UID_MIN..OWNER_UID_MAX ({low}..{high}) is allocated; widen the range"
    )


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
    class Scope(models.TextChoices):
        FULL = "full", "everything the user may do"
        RELOAD = "reload", "reload web apps only"

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
    # A reload-only token (for a CI job) gets 403 on everything but the reload endpoint.
    scope = models.CharField(max_length=8, choices=Scope.choices, default=Scope.FULL)

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
