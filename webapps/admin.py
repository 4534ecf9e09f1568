"""Admin: staff can see every app and reload, read-only (state changes go through
webapps.actions, which the admin does not bypass). Each app also shows what the panel's own node
runs of it: its phase and the memory of its processes (``webapps.node_client.apps_here``)."""

from django.conf import settings
from django.contrib import admin

from panel.accounts.admin import ReadOnlyAdmin
from webapps import node_client
from webapps.actions import server_settings
from webapps.models import ReloadEvent, WebApp

MiB = 1024 * 1024


def on_this_node(domain: str) -> str:
    """One line on the app's process on the panel's own node (a node of its own has no other)."""
    if not settings.NODE_CONTROL_SOCKET:
        return "the panel runs on no node"
    try:
        app = node_client.apps_here().get(domain)
    except node_client.ControlError as exc:
        return f"node {settings.NODE_NAME} not reachable ({exc})"
    if app is None:
        return "not started on this node"
    phase = str(app.get("phase", "?"))
    rss = app.get("rss_bytes")
    if rss is None:
        return phase
    return f"{phase}, {rss / MiB:.1f} MiB in {app.get('processes', 0)} processes"


@admin.register(WebApp)
class WebAppAdmin(ReadOnlyAdmin):
    list_display = ["domain", "owner", "enabled", "wsgi_entry", "app_server", "updated_at",
                    "on_node"]  # fmt: skip
    list_filter = ["enabled"]
    search_fields = ["domain", "owner__username"]
    list_select_related = ["owner"]
    readonly_fields = ["app_server", "on_node"]

    @admin.display(description="app server")
    def app_server(self, obj: WebApp) -> str:
        """What the app's gunicorn is set to; "(default)" for what its owner left empty."""
        now = server_settings(obj)

        def said(name: str, shown: str) -> str:
            return f"{shown} (default)" if getattr(obj, name) is None else shown

        kind = "gthread" if now["threads"] > 1 else "sync"
        return ", ".join(
            (
                said("workers", f"workers {now['workers']}"),
                said("threads", f"threads {now['threads']} ({kind})"),
                said("worker_timeout", f"timeout {now['worker_timeout']} s"),
            )
        )

    @admin.display(description="on this node")
    def on_node(self, obj: WebApp) -> str:
        return on_this_node(obj.domain)


@admin.register(ReloadEvent)
class ReloadEventAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "webapp", "user", "via", "backend", "outcome", "duration_ms"]
    list_filter = ["outcome", "via", "backend"]
    search_fields = ["webapp__domain", "request_id"]
    list_select_related = ["webapp", "user"]
