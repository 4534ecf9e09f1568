"""Admin: users, and read-only tokens and audit trail (state changes go through the actions,
which the admin does not bypass). ``ReadOnlyAdmin`` is the base every app's read-only pages use."""

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin

from panel.accounts.models import ApiToken, AuditEvent, User

admin.site.register(User, UserAdmin)


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


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
