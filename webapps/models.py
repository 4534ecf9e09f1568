"""Users, their web apps, reloads, API tokens and the audit trail."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime

from django.conf import settings
from django.contrib.auth.models import AbstractUser, UserManager
from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone

from webapps.domains import display_domain


class CaseInsensitiveUserManager(UserManager):
    """Usernames are unique regardless of case: ``/user/ironhand/`` finds ``IronHand``."""

    def get_by_natural_key(self, username: str):
        return self.get(username__iexact=username)


class User(AbstractUser):
    objects = CaseInsensitiveUserManager()

    class Meta:
        constraints = [
            models.UniqueConstraint(Lower("username"), name="webapps_user_username_ci_unique"),
        ]

    def __str__(self) -> str:
        return self.username


class Via(models.TextChoices):
    UI = "ui", "Web tab"
    API = "api", "API"
    CLI = "cli", "command line"
    ADMIN = "admin", "admin"


class WebApp(models.Model):
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="webapps"
    )
    # Always routing.canonical_host(...) of what was typed: the routing key itself.
    domain = models.CharField(max_length=253, unique=True)
    source_directory = models.CharField(max_length=4096)
    wsgi_entry = models.CharField(max_length=200, default="wsgi:application")
    python_version = models.CharField(max_length=16, blank=True)
    virtualenv_path = models.CharField(max_length=4096, blank=True)
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["domain"]
        constraints = [
            # A second line of defence: a non-canonical (upper-case) domain can never be stored.
            models.CheckConstraint(
                condition=models.Q(domain=Lower("domain")), name="webapps_webapp_domain_lower"
            ),
        ]

    def __str__(self) -> str:
        return self.domain

    @property
    def domain_display(self) -> str:
        return display_domain(self.domain)


class ReloadEvent(models.Model):
    class Outcome(models.TextChoices):
        OK = "ok", "reloaded"
        FAILED = "failed", "failed"

    webapp = models.ForeignKey(WebApp, on_delete=models.CASCADE, related_name="reloads")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    via = models.CharField(max_length=8, choices=Via.choices)
    backend = models.CharField(max_length=100, blank=True)
    outcome = models.CharField(max_length=8, choices=Outcome.choices)
    duration_ms = models.PositiveIntegerField(default=0)
    message = models.TextField(blank=True)
    log_tail = models.TextField(blank=True)
    request_id = models.CharField(max_length=100, blank=True)
    client_ip = models.GenericIPAddressField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["webapp", "-created_at"], name="webapps_reload_app_time")]

    def __str__(self) -> str:
        return f"reload of {self.webapp_id} on {self.backend or '-'}: {self.outcome}"

    @property
    def ok(self) -> bool:
        return self.outcome == self.Outcome.OK

    def summary(self) -> str:
        if self.ok:
            return f"Reloaded on {self.backend} in {self.duration_ms} ms"
        return f"Reload failed: {self.message}"


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


class AuditEvent(models.Model):
    class Outcome(models.TextChoices):
        OK = "ok", "done"
        DENIED = "denied", "denied"
        FAILED = "failed", "failed"

    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    # Kept as text so the trail still reads after the user or app is gone.
    actor_username = models.CharField(max_length=150, blank=True)
    action = models.CharField(max_length=32)
    outcome = models.CharField(max_length=8, choices=Outcome.choices)
    target = models.CharField(max_length=300, blank=True)
    via = models.CharField(max_length=8, choices=Via.choices)
    request_id = models.CharField(max_length=100, blank=True)
    client_ip = models.GenericIPAddressField(null=True, blank=True)
    detail = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["action", "-created_at"], name="webapps_audit_action_time")]

    def __str__(self) -> str:
        return f"{self.actor_username or '-'} {self.action} {self.target}: {self.outcome}"


def attach_last_reloads(webapps: list[WebApp]) -> list[WebApp]:
    """Set ``webapp.last_reload`` (the newest ReloadEvent or None) on each app in two queries."""
    ids = [webapp.pk for webapp in webapps]
    newest = (
        ReloadEvent.objects.filter(webapp_id=models.OuterRef("webapp_id"))
        .order_by("-created_at", "-id")
        .values("id")[:1]
    )
    events = ReloadEvent.objects.filter(webapp_id__in=ids, id=models.Subquery(newest))
    by_app = {event.webapp_id: event for event in events}
    for webapp in webapps:
        webapp.last_reload = by_app.get(webapp.pk)
    return webapps
