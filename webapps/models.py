"""Users' web apps and their reloads (users, tokens and the audit trail: ``panel.accounts``)."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone

from panel.accounts.models import Via
from webapps.domains import display_domain


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


class StaticFileMapping(models.Model):
    """A URL prefix of an app that its node serves from a directory of the owner's home.

    ``url`` follows ``webapps.node.static.check_url_prefix``; ``path`` is absolute, inside the
    owner's home, reached through no symlink (``webapps.homes.clean_static_directory``).
    """

    webapp = models.ForeignKey(WebApp, on_delete=models.CASCADE, related_name="static_files")
    url = models.CharField(max_length=255)
    path = models.CharField(max_length=4096)
    cache_control = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["url", "id"]
        constraints = [
            models.UniqueConstraint(fields=["webapp", "url"], name="webapps_static_url_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.url} -> {self.path}"
