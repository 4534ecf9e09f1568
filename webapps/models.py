"""Users' web apps and their reloads (users, tokens and the audit trail: ``panel.accounts``)."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone

from panel.accounts.models import Via
from webapps.domains import display_domain
from webapps.node.outcome import Result, misrouted_warning, summary_of


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
    # The proxy redirects plain HTTP to HTTPS for this app when set.
    force_https = models.BooleanField(default=False)
    # HTTP basic authentication in front of the app, checked by the node. The password is kept
    # only as a PBKDF2 hash in Django's format (webapps.actions), never in clear.
    password_protection_enabled = models.BooleanField(default=False)
    password_protection_username = models.CharField(max_length=150, blank=True)
    password_protection_hash = models.CharField(max_length=256, blank=True)
    # The app's gunicorn, as its owner chose it within the operator's limits
    # (NODE_MAX_*_PER_APP, checked by webapps.actions); null: the platform's default.
    workers = models.PositiveSmallIntegerField(null=True, blank=True)
    threads = models.PositiveSmallIntegerField(null=True, blank=True)
    worker_timeout = models.PositiveSmallIntegerField(null=True, blank=True)  # seconds
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
        NOT_RUNNING = "not_running", "not running"
        FAILED = "failed", "failed"

    webapp = models.ForeignKey(WebApp, on_delete=models.CASCADE, related_name="reloads")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    via = models.CharField(max_length=8, choices=Via.choices)
    backend = models.CharField(max_length=100, blank=True)
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    # None when nothing was restarted (not running there): no "0 ms" for a reload that was not.
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    workers = models.PositiveSmallIntegerField(null=True, blank=True)
    generation = models.PositiveIntegerField(null=True, blank=True)  # X-App-Generation now
    # The node's route table sends the app's traffic elsewhere (to traffic_backend).
    misrouted = models.BooleanField(default=False)
    traffic_backend = models.CharField(max_length=100, blank=True)
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
        """The node did what a reload asks: reloaded it, or it was not running there."""
        return self.outcome != self.Outcome.FAILED

    @property
    def result(self) -> Result:
        return _RESULTS[self.outcome]

    @classmethod
    def outcome_of(cls, result: str) -> ReloadEvent.Outcome:
        return next(outcome for outcome, r in _RESULTS.items() if r == result)

    def warning(self) -> str:
        return misrouted_warning(self.backend, self.traffic_backend) if self.misrouted else ""

    def report(self) -> dict:
        """What the API and the Web tab answer about this reload (besides ``status``)."""
        report = {
            "result": str(self.result),
            "backend": self.backend,
            "duration_ms": self.duration_ms,
            "workers": self.workers,
            "generation": self.generation,
            "misrouted": self.misrouted,
            "summary": self.summary(),
        }
        if self.misrouted:
            report["warning"] = self.warning()
        return report

    def summary(self) -> str:
        """What the reload did, in the words of ``webapps.node.outcome.summary``."""
        return summary_of(self)


_RESULTS = {
    ReloadEvent.Outcome.OK: Result.RELOADED,
    ReloadEvent.Outcome.NOT_RUNNING: Result.NOT_RUNNING,
    ReloadEvent.Outcome.FAILED: Result.FAILED,
}


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


class Certificate(models.Model):
    """An app's own certificate for its domain (HTTPS per domain; docs/api.md, "HTTPS").

    The private key is never stored: only ``sealed_key``, the key sealed to the proxies
    (``routing.sealed``), which the panel cannot open (decision 0091). An automatic certificate
    has a row from the moment it is asked for; its certificate fields stay empty until the
    first order succeeds, and a failed renewal leaves them as they were.
    """

    class Type(models.TextChoices):
        MANUAL = "manual", "uploaded"
        AUTO = "letsencrypt-auto-renew", "automatic"

    webapp = models.OneToOneField(WebApp, on_delete=models.CASCADE, related_name="certificate")
    cert_type = models.CharField(max_length=32, choices=Type.choices)
    chain = models.TextField(blank=True)  # PEM, leaf first; public
    sealed_key = models.TextField(blank=True)
    serial = models.CharField(max_length=64, blank=True)
    not_before = models.DateTimeField(null=True, blank=True)
    not_after = models.DateTimeField(null=True, blank=True)
    issuer_name = models.CharField(max_length=500, blank=True)
    subject_name = models.CharField(max_length=500, blank=True)
    subject_alternate_names = models.JSONField(default=list, blank=True)
    # Automatic certificates: when the next renewal is due, the back-off after failures, the
    # last failure in plain words, and the order in flight (one per domain at a time).
    renew_after = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    failures = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    last_error_at = models.DateTimeField(null=True, blank=True)
    ordering_since = models.DateTimeField(null=True, blank=True)
    issued_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["cert_type", "renew_after"], name="webapps_cert_renewal")]

    def __str__(self) -> str:
        return f"{self.get_cert_type_display()} certificate of {self.webapp_id}"

    @property
    def automatic(self) -> bool:
        return self.cert_type == self.Type.AUTO

    @property
    def installed(self) -> bool:
        return bool(self.chain and self.sealed_key)

    @property
    def next_renewal(self):
        """When the next order is due: the back-off's time after a failure, else renew_after."""
        if not self.automatic:
            return None
        if self.next_attempt_at is not None and (
            self.renew_after is None or self.next_attempt_at > self.renew_after
        ):
            return self.next_attempt_at
        return self.renew_after

    def status_text(self) -> str:
        """The Web tab's one line: "Automatic (renews on 2027-01-12)", the last error, ..."""
        if not self.automatic:
            return f"Uploaded certificate, expires on {self.not_after:%Y-%m-%d}"
        if self.last_error:
            when = self.next_renewal
            retry = f"; next try on {when:%Y-%m-%d %H:%M} UTC" if when else ""
            kept = (
                f" The current certificate (expires {self.not_after:%Y-%m-%d}) stays in use."
                if self.installed
                else ""
            )
            return f"Automatic HTTPS failed: {self.last_error}{retry}.{kept}"
        if not self.installed:
            return "Automatic: the first certificate is being ordered"
        return f"Automatic (renews on {self.renew_after:%Y-%m-%d})"


class AcmeChallenge(models.Model):
    """An HTTP-01 answer the proxies serve while an order is in flight (routing.certs)."""

    token = models.CharField(max_length=256, unique=True)
    key_authorization = models.CharField(max_length=400)
    domain = models.CharField(max_length=253)
    expires_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"challenge for {self.domain}"


class ProxyDocument(models.Model):
    """The version of each signed document the proxies read (``tls``, ``acme``): locking the
    row serialises publishers, and a Redis that lost its data still gets a higher version."""

    name = models.CharField(max_length=16, primary_key=True)
    version = models.PositiveBigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.name} version {self.version}"
