"""Admin: staff can see everything, but reloads, tokens and the audit trail are read-only there
(state changes go through webapps.actions, which the admin does not bypass)."""

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin

from webapps.models import ApiToken, AuditEvent, ReloadEvent, User, WebApp

admin.site.register(User, UserAdmin)


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


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


@admin.register(ApiToken)
class ApiTokenAdmin(ReadOnlyAdmin):
    list_display = ["prefix", "user", "name", "created_at", "last_used_at", "expires_at", "state"]
    search_fields = ["prefix", "user__username", "name"]
    exclude = ["key_hash"]
    list_select_related = ["user"]


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "actor_username", "action", "outcome", "target", "via"]
    list_filter = ["action", "outcome", "via"]
    search_fields = ["actor_username", "target", "request_id"]
