"""Admin: staff can see every app and reload, read-only (state changes go through
webapps.actions, which the admin does not bypass)."""

from django.contrib import admin

from panel.accounts.admin import ReadOnlyAdmin
from webapps.models import ReloadEvent, WebApp


@admin.register(WebApp)
class WebAppAdmin(ReadOnlyAdmin):
    list_display = ["domain", "owner", "enabled", "wsgi_entry", "updated_at"]
    list_filter = ["enabled"]
    search_fields = ["domain", "owner__username"]
    list_select_related = ["owner"]


@admin.register(ReloadEvent)
class ReloadEventAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "webapp", "user", "via", "backend", "outcome", "duration_ms"]
    list_filter = ["outcome", "via", "backend"]
    search_fields = ["webapp__domain", "request_id"]
    list_select_related = ["webapp", "user"]
