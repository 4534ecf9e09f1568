"""Admin for the backend pool: every change goes through ``routing.pool.actions``, after a page that
shows which apps will move to which backend (computed on the real app list).

- add / change: the form is checked, then a confirmation page shows the move plan; only the
  confirmed post calls ``do_add_backend`` / ``do_update_backend``.
- drain / activate / disable (list actions) and delete: a confirmation page with the combined
  plan, then one action per backend.
- revisions: read-only history (who, when, what, how many apps moved).
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse

from panel.accounts.admin import ReadOnlyAdmin
from panel.accounts.models import Via
from panel.accounts.origin import Origin
from routing.pool import actions, tables
from routing.pool.fleet import fleet_status
from routing.pool.models import Backend, Revision

# The confirmation page names at most this many apps; the counts always cover all of them.
MAX_LISTED_MOVES = 500


def _origin(request: HttpRequest) -> Origin:
    return Origin.from_request(request, Via.ADMIN)


class BackendForm(forms.ModelForm):
    force = forms.BooleanField(
        required=False,
        help_text="allow a change that leaves the pool without an active backend",
    )

    class Meta:
        model = Backend
        fields = ["name", "address", "weight", "state", "notes"]

    def clean(self):
        cleaned = super().clean()
        if self.errors:
            return cleaned
        force = cleaned.get("force", False)
        fields = {k: cleaned.get(k) for k in ("address", "weight", "state", "notes")}
        try:
            if self.instance.pk is None:
                spec = {"name": cleaned.get("name"), **fields}
                self.change = actions.preview("backend.add", spec, force)
            else:
                spec = {"name": self.instance.name, **fields}
                self.change = actions.preview("backend.update", spec, force)
        except actions.ActionError as exc:
            field = exc.field if exc.field in self.fields else None
            self.add_error(field, exc.message)
        return cleaned

    def _post_clean(self) -> None:
        # The model's own checks run in the action; here they would only repeat the uniqueness
        # query (and the action gives the clearer message).
        pass


@admin.register(Backend)
class BackendAdmin(admin.ModelAdmin):
    form = BackendForm
    list_filter = ["state"]
    search_fields = ["name", "address", "notes"]
    actions = ["drain_selected", "activate_selected", "disable_selected"]
    fields = ["name", "address", "weight", "state", "notes", "force"]

    def get_urls(self):
        fleet = path(
            "fleet/", self.admin_site.admin_view(self.fleet_view), name="routing_backend_fleet"
        )
        return [fleet, *super().get_urls()]

    def fleet_view(self, request: HttpRequest) -> HttpResponse:
        """Every proxy and node, the version each holds against the current one, the pool's
        apps per backend and what a change not yet everywhere moves (``?version=``: follow
        one change, as the page after a pool change does)."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        raw = request.GET.get("version", "")
        version = int(raw) if raw.isdigit() and len(raw) <= 20 else None
        status = fleet_status(version)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Fleet",
            "status": status,
            "rows": status.member_rows(),
            "followed": version is not None,
            "refresh": version is not None and not status.convergence.converged,
        }
        return TemplateResponse(request, "admin/routing/backend/fleet.html", context)

    def _after_change(self, version: int | None) -> HttpResponseRedirect:
        """After a pool change: the fleet page, following that version to every member."""
        if version is None:
            return HttpResponseRedirect(reverse("admin:routing_backend_changelist"))
        return HttpResponseRedirect(f"{reverse('admin:routing_backend_fleet')}?version={version}")

    def response_add(self, request, obj, post_url_continue=None):
        version = getattr(request, "routing_version", None)
        if version is None:
            return super().response_add(request, obj, post_url_continue)
        return self._after_change(version)

    def response_change(self, request, obj):
        version = getattr(request, "routing_version", None)
        if version is None:
            return super().response_change(request, obj)
        return self._after_change(version)

    def get_readonly_fields(self, request, obj=None):
        return ["name"] if obj is not None else []

    def get_actions(self, request):
        found = super().get_actions(request)
        # Bulk delete would bypass the actions; delete one backend from its own page instead.
        found.pop("delete_selected", None)
        return found

    def changelist_view(self, request, extra_context=None):
        # One pass over the app list for the whole page, not one per row; kept on the request
        # (the admin object is shared by every request).
        request.routing_app_counts = tables.apps_per_backend()
        unrouted = request.routing_app_counts.get(None, 0)
        if unrouted:
            self.message_user(request, f"{unrouted} apps have no active backend", messages.WARNING)
        return super().changelist_view(request, extra_context)

    def get_list_display(self, request):
        counts = getattr(request, "routing_app_counts", None)
        if counts is None:
            counts = tables.apps_per_backend()

        @admin.display(description="apps")
        def apps(obj: Backend) -> int:
            return counts.get(obj.name, 0)

        return ["name", "address", "weight", "state", apps, "notes_short", "updated_at"]

    @admin.display(description="notes")
    def notes_short(self, obj: Backend) -> str:
        return obj.notes if len(obj.notes) <= 60 else obj.notes[:57] + "..."

    # --- add and change: a confirmation page between the valid form and the action ---------

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        if request.method == "POST" and "_confirmed" not in request.POST:
            obj = self.get_object(request, object_id) if object_id else None
            if object_id and obj is None:
                return super().changeform_view(request, object_id, form_url, extra_context)
            if obj is None and not self.has_add_permission(request):
                raise PermissionDenied
            if obj is not None and not self.has_change_permission(request, obj):
                raise PermissionDenied
            form_class = self.get_form(request, obj, change=obj is not None)
            form = form_class(request.POST, instance=obj)
            if form.is_valid() and form.change.changed:
                return self.confirmation(request, form.change, repost=True)
        if request.method == "POST":
            # The action is the transaction (durable): the admin's own atomic block around a
            # saved form would nest it, so a post runs without one.
            return self._changeform_view(request, object_id, form_url, extra_context)
        return super().changeform_view(request, object_id, form_url, extra_context)

    def save_model(self, request, obj: Backend, form: BackendForm, change: bool) -> None:
        data = form.cleaned_data
        fields = {k: data.get(k) for k in ("address", "weight", "state", "notes")}
        name = obj.name if change else data["name"]
        force = data.get("force", False)
        try:
            if change:
                done = actions.do_update_backend(
                    name, actor=request.user, origin=_origin(request), force=force, **fields
                )
            else:
                address = fields.pop("address")
                done = actions.do_add_backend(
                    name, address, actor=request.user, origin=_origin(request), **fields
                )
            request.routing_version = done.version if done.changed else None
        except actions.ActionError as exc:
            # The pool changed between the confirmation and this post; nothing was written.
            self.message_user(request, f"Not saved: {exc.message}", messages.ERROR)
        saved = Backend.objects.filter(name=name).first()
        if saved is not None:
            obj.pk, obj.name = saved.pk, saved.name

    def log_addition(self, request, obj, message):
        # The revision history is the record of pool changes; skip the admin's duplicate entry
        # when the action refused the change.
        if obj.pk is not None:
            super().log_addition(request, obj, message)

    # --- delete --------------------------------------------------------------------------------

    def delete_view(self, request, object_id, extra_context=None):
        obj = self.get_object(request, object_id)
        if obj is None or not self.has_delete_permission(request, obj):
            return super().delete_view(request, object_id, extra_context)
        force = request.POST.get("force") == "on"
        if request.method == "POST" and "_confirmed" in request.POST:
            try:
                change = actions.do_remove_backend(
                    obj.name, actor=request.user, origin=_origin(request), force=force
                )
            except actions.ActionError as exc:
                self.message_user(request, f"Not removed: {exc.message}", messages.ERROR)
            else:
                self.message_user(request, f"version {change.version}: {change.summary}")
                return self._after_change(change.version)
            return HttpResponseRedirect(reverse("admin:routing_backend_changelist"))
        try:
            change = actions.preview("backend.remove", {"name": obj.name}, force=True)
        except actions.ActionError as exc:
            self.message_user(request, exc.message, messages.ERROR)
            return HttpResponseRedirect(reverse("admin:routing_backend_changelist"))
        return self.confirmation(request, change, repost=False, needs_force=not change.after.active)

    # --- drain / activate / disable --------------------------------------------------------------

    def _state_action(self, request, queryset, action: str, state: str):
        names = sorted(queryset.values_list("name", flat=True))
        steps = [(action, {"name": name, "state": state}) for name in names]
        force = request.POST.get("force") == "on"
        if "_confirmed" in request.POST:
            try:
                # Check the combined effect first, so a refused bulk change applies no step.
                actions.preview_steps(steps, force=force)
            except actions.ActionError as exc:
                self.message_user(request, exc.message, messages.ERROR)
                return None
            done, last = [], None
            for name in names:
                try:
                    change = actions.do_update_backend(
                        name, actor=request.user, origin=_origin(request), state=state, force=force
                    )
                except actions.ActionError as exc:
                    self.message_user(request, f"{name}: {exc.message}", messages.ERROR)
                    break
                if change.changed:
                    done.append(f"version {change.version}: {change.summary}")
                    last = change.version
            for line in done:
                self.message_user(request, line)
            return self._after_change(last) if last is not None else None
        try:
            change = actions.preview_steps(steps, force=True)
        except actions.ActionError as exc:
            self.message_user(request, exc.message, messages.ERROR)
            return None
        return self.confirmation(
            request,
            change,
            repost=True,
            needs_force=bool(change.before.active) and not change.after.active,
        )

    @admin.action(description="Drain the selected backends (stop routing apps to them)")
    def drain_selected(self, request, queryset):
        return self._state_action(request, queryset, "backend.drain", "draining")

    @admin.action(description="Activate the selected backends")
    def activate_selected(self, request, queryset):
        return self._state_action(request, queryset, "backend.activate", "active")

    @admin.action(description="Disable the selected backends")
    def disable_selected(self, request, queryset):
        return self._state_action(request, queryset, "backend.disable", "disabled")

    # --- the confirmation page -------------------------------------------------------------------

    def confirmation(
        self, request, change: actions.Change, repost: bool, needs_force: bool = False
    ) -> HttpResponse:
        hidden = []
        if repost:
            hidden = [
                (key, value)
                for key, values in request.POST.lists()
                for value in values
                if key not in {"csrfmiddlewaretoken", "_confirmed", "force"}
            ]
        force_given = request.POST.get("force") == "on"
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Confirm the pool change",
            "change": change,
            "counts": change.plan.counts(),
            "moves": change.plan.moves[:MAX_LISTED_MOVES],
            "more_moves": max(0, change.plan.moved - MAX_LISTED_MOVES),
            "hidden": hidden,
            "needs_force": needs_force,
            "force_given": force_given,
            "before_active": [b.name for b in change.before.active],
            "after_active": [b.name for b in change.after.active],
        }
        return TemplateResponse(request, "admin/routing/backend/confirm_change.html", context)


@admin.register(Revision)
class RevisionAdmin(ReadOnlyAdmin):
    list_display = [
        "version",
        "created_at",
        "actor_username",
        "via",
        "action",
        "summary",
        "apps_moved",
        "apps_total",
    ]
    list_filter = ["action", "via"]
    search_fields = ["summary", "backend_name", "actor_username"]
    readonly_fields = [f.name for f in Revision._meta.fields]
