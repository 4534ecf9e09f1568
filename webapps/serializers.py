"""API v0 shapes, after a well-known hosting API (same field names, plain JSON arrays).

Input serializers only check types and refuse unknown fields; the rules (domains, paths) live
in ``webapps.actions`` so the Web tab and the API share them.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from panel.accounts.serializers import (
    FormSafeBooleanField,
    StrictCharField,
    StrictInputSerializer,
    StrictIntegerField,
)
from routing import reload_path
from webapps.certificates import MAX_PEM
from webapps.models import Certificate, ReloadEvent, StaticFileMapping, WebApp
from webapps.node.spec import MIN_TIMEOUT
from webapps.routes import serving_backend

# What the API returns but nobody sets (PythonAnywhere's read-only fields and ours).
READ_ONLY_FIELDS = (
    "id",
    "user",
    "working_directory",
    "expiry",
    "domain_display",
    "backend",
    "reload_url",
    "api_reload_url",
    "last_reload",
    "created_at",
    "updated_at",
)


class WebAppInputSerializer(StrictInputSerializer):
    """The fields an app's owner sets, on create and update alike. A field left out is not in
    ``validated_data``: the action keeps its default (create) or stored value (update)."""

    read_only_fields = READ_ONLY_FIELDS

    source_directory = StrictCharField(required=False, max_length=4096)
    wsgi_entry = StrictCharField(required=False, max_length=200)
    python_version = StrictCharField(required=False, allow_blank=True, max_length=16)
    virtualenv_path = StrictCharField(
        required=False, allow_blank=True, allow_null=True, max_length=4096
    )
    enabled = FormSafeBooleanField(required=False)
    force_https = FormSafeBooleanField(required=False)
    password_protection_enabled = FormSafeBooleanField(required=False)
    password_protection_username = StrictCharField(
        required=False, allow_blank=True, allow_null=True, max_length=150, trim_whitespace=False
    )
    password_protection_password = StrictCharField(
        required=False,
        allow_blank=True,
        allow_null=True,
        max_length=256,
        trim_whitespace=False,
        write_only=True,
        help_text="Write-only: stored as a PBKDF2 hash, never returned.",
    )
    # The app server (ours: the hosting API has no such fields). null: the platform's default;
    # the most allowed is the operator's (webapps.actions.server_limits).
    workers = StrictIntegerField(
        required=False,
        allow_null=True,
        min_value=1,
        help_text="gunicorn worker processes; null for the default (2). At most "
        "NODE_MAX_WORKERS_PER_APP (4 unless the operator set another).",
    )
    threads = StrictIntegerField(
        required=False,
        allow_null=True,
        min_value=1,
        help_text="Threads per worker; more than 1 runs gthread workers, which keep "
        "connections alive. null for the default (1). At most NODE_MAX_THREADS_PER_APP (8).",
    )
    worker_timeout = StrictIntegerField(
        required=False,
        allow_null=True,
        min_value=MIN_TIMEOUT,
        help_text="Seconds a request may take before its visitor gets 504 and a sync worker is "
        "restarted; null for the node's request timeout (60). At most NODE_MAX_TIMEOUT_PER_APP "
        "(300).",
    )


class WebAppCreateSerializer(WebAppInputSerializer):
    domain_name = StrictCharField(max_length=300)
    template = StrictCharField(
        required=False,
        allow_blank=True,
        max_length=16,
        help_text="A project written into the source directory: wsgi, flask or django "
        "(default: the wsgi starter in the default source directory).",
    )
    source_directory = StrictCharField(required=False, allow_blank=True, max_length=4096)
    wsgi_entry = StrictCharField(required=False, allow_blank=True, max_length=200)


class WebAppUpdateSerializer(WebAppInputSerializer):
    def to_internal_value(self, data):
        if hasattr(data, "keys") and "domain_name" in data:
            raise serializers.ValidationError(
                {"domain_name": ["The domain of a web app cannot be changed; create a new one."]}
            )
        return super().to_internal_value(data)


class ReloadEventSerializer(serializers.ModelSerializer):
    ok = serializers.BooleanField(read_only=True)
    result = serializers.CharField(read_only=True)
    summary = serializers.CharField(read_only=True)
    at = serializers.DateTimeField(source="created_at", read_only=True)

    class Meta:
        model = ReloadEvent
        fields = [
            "ok",
            "result",
            "backend",
            "duration_ms",
            "workers",
            "generation",
            "misrouted",
            "traffic_backend",
            "message",
            "log_tail",
            "via",
            "at",
            "summary",
        ]


class WebAppSerializer(serializers.ModelSerializer):
    """An app as the API returns it. Context: ``request`` and ``route_table`` (may be None)."""

    user = serializers.CharField(source="owner.username", read_only=True)
    domain_name = serializers.CharField(source="domain", read_only=True)
    domain_display = serializers.CharField(read_only=True)
    working_directory = serializers.CharField(source="source_directory", read_only=True)
    backend = serializers.SerializerMethodField()
    reload_url = serializers.SerializerMethodField()
    api_reload_url = serializers.SerializerMethodField()
    last_reload = serializers.SerializerMethodField()
    expiry = serializers.SerializerMethodField()

    class Meta:
        model = WebApp
        fields = [
            "id",
            "user",
            "domain_name",
            "domain_display",
            "python_version",
            "source_directory",
            "working_directory",
            "virtualenv_path",
            "wsgi_entry",
            "enabled",
            "force_https",
            "password_protection_enabled",
            "password_protection_username",
            "workers",
            "threads",
            "worker_timeout",
            "expiry",
            "backend",
            "reload_url",
            "api_reload_url",
            "last_reload",
            "created_at",
            "updated_at",
        ]

    def get_backend(self, webapp: WebApp) -> str | None:
        return serving_backend(self.context.get("route_table"), webapp.domain) or None

    def _absolute(self, path: str) -> str:
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request is not None else path

    def get_reload_url(self, webapp: WebApp) -> str:
        return self._absolute(reload_path(webapp.owner.username, webapp.domain))

    def get_api_reload_url(self, webapp: WebApp) -> str:
        return self._absolute(reload_path(webapp.owner.username, webapp.domain, api=True))

    @extend_schema_field(serializers.DateField(allow_null=True))
    def get_expiry(self, webapp: WebApp) -> None:
        """Apps here do not expire (PythonAnywhere's free apps do): always null."""
        return None

    @extend_schema_field(ReloadEventSerializer(allow_null=True))
    def get_last_reload(self, webapp: WebApp) -> dict | None:
        if not hasattr(webapp, "last_reload"):
            webapp.last_reload = webapp.reloads.order_by("-created_at", "-id").first()
        event = webapp.last_reload
        return ReloadEventSerializer(event).data if event is not None else None


class SSLInputSerializer(StrictInputSerializer):
    """``POST .../ssl/``: an upload (``cert`` and ``private_key``, PEM) or
    ``{"cert_type": "letsencrypt-auto-renew"}``. Whitespace is kept: PEM is checked as sent."""

    cert = StrictCharField(required=False, trim_whitespace=False, max_length=MAX_PEM)
    private_key = StrictCharField(required=False, trim_whitespace=False, max_length=MAX_PEM)
    cert_type = serializers.ChoiceField(choices=[c.value for c in Certificate.Type], required=False)

    def validate(self, attrs):
        auto = attrs.get("cert_type") == Certificate.Type.AUTO
        if auto and ("cert" in attrs or "private_key" in attrs):
            raise serializers.ValidationError(
                {"cert_type": ["An automatic certificate takes no cert or private_key."]}
            )
        if not auto:
            missing = [name for name in ("cert", "private_key") if name not in attrs]
            if missing:
                raise serializers.ValidationError({name: ["This field is required."]
                                                   for name in missing})  # fmt: skip
        return attrs


class SSLInfoSerializer(serializers.ModelSerializer):
    """``GET .../ssl/``: the certificate presented for the app's domain, with the fields of the
    hosting API (``not_after``, ``issuer_name``, ``subject_name``,
    ``subject_alternate_names``) and, for automatic ones, the next renewal and the last error."""

    next_renewal = serializers.DateTimeField(read_only=True, allow_null=True)
    status = serializers.SerializerMethodField()
    status_text = serializers.CharField(read_only=True)
    last_error = serializers.SerializerMethodField()

    class Meta:
        model = Certificate
        fields = [
            "cert_type",
            "not_after",
            "issuer_name",
            "subject_name",
            "subject_alternate_names",
            "not_before",
            "serial",
            "status",
            "status_text",
            "next_renewal",
            "last_error",
            "last_error_at",
            "issued_at",
        ]

    def get_status(self, row: Certificate) -> str:
        if row.installed:
            return "installed"
        return "failed" if row.last_error else "pending"

    def get_last_error(self, row: Certificate) -> str | None:
        return row.last_error or None


class StaticFileMappingSerializer(serializers.ModelSerializer):
    """A static files mapping as the API returns it: ``id``, ``url``, ``path`` (and ours)."""

    class Meta:
        model = StaticFileMapping
        fields = ["id", "url", "path", "cache_control"]
        read_only_fields = fields


class StaticFileMappingInputSerializer(StrictInputSerializer):
    """POST and PUT: ``url`` and ``path`` required; PATCH: any of them (``partial=True``)."""

    url = StrictCharField(max_length=255, trim_whitespace=False)
    path = StrictCharField(max_length=4096)
    cache_control = StrictCharField(required=False, allow_blank=True, max_length=200)
