"""The Web tab: thin views that authorise (webapps.access), call one action, render."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from drf_spectacular.generators import SchemaGenerator

from panel.accounts.models import Via
from panel.accounts.origin import Origin
from routing import reload_path
from webapps import access, actions, applogs, node_client, tls
from webapps.applogs import listing_for, logs_for
from webapps.forms import (
    AppServerForm,
    PasswordProtectionForm,
    StaticMappingForm,
    WebAppCreateForm,
    WebAppUpdateForm,
)
from webapps.models import Certificate, StaticFileMapping, WebApp, attach_last_reloads
from webapps.node.control import ControlError
from webapps.routes import published_table, serving_backend


def _origin(request: HttpRequest) -> Origin:
    return Origin.from_request(request, Via.UI)


def _wants_json(request: HttpRequest) -> bool:
    return "application/json" in request.headers.get("Accept", "")


def home(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect("webapp-list", username=request.user.username)
    return redirect("login")


def _app_rows(request: HttpRequest, webapps: list[WebApp]) -> list[dict]:
    table = published_table()
    return [
        {
            "app": webapp,
            "backend": serving_backend(table, webapp.domain),
            "reload_path": reload_path(webapp.owner.username, webapp.domain),
            "api_reload_url": request.build_absolute_uri(
                reload_path(webapp.owner.username, webapp.domain, api=True)
            ),
        }
        for webapp in attach_last_reloads(webapps)
    ]


@login_required
@require_http_methods(["GET", "HEAD", "POST"])
def webapp_list(request: HttpRequest, username: str) -> HttpResponse:
    action = "webapp.create" if request.method == "POST" else "webapp.read"
    access.check_path_user(request.user, username, action, _origin(request))
    form = WebAppCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            webapp = actions.do_create_webapp(
                form.cleaned_data["domain_name"],
                actor=request.user,
                origin=_origin(request),
                source_directory=form.cleaned_data["source_directory"],
                wsgi_entry=form.cleaned_data["wsgi_entry"],
                python_version=form.cleaned_data["python_version"],
                virtualenv_path=form.cleaned_data["virtualenv_path"],
                template=form.cleaned_data["template"],
            )
        except actions.ActionError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, exc.message)
        else:
            messages.success(request, f"Created {webapp.domain_display}: press Reload to start it.")
            return redirect("webapp-list", username=request.user.username)
    webapps = list(WebApp.objects.filter(owner=request.user).select_related("owner"))
    status = 400 if request.method == "POST" else 200
    context = {"rows": _app_rows(request, webapps), "form": form}
    return render(request, "webapps/list.html", context, status=status)


@login_required
@require_http_methods(["GET", "HEAD", "POST"])
def webapp_detail(request: HttpRequest, username: str, domain: str) -> HttpResponse:
    action = "webapp.update" if request.method == "POST" else "webapp.read"
    webapp = access.owned_webapp(request.user, username, domain, action, _origin(request))
    form = WebAppUpdateForm(request.POST or None, initial=_settings_initial(webapp))
    if request.method != "POST":
        return _render_detail(request, webapp, form=form)
    return _update_from_form(
        request, webapp, form, "form", lambda: form.cleaned_data, f"Saved {webapp.domain_display}."
    )


def _update_from_form(
    request: HttpRequest,
    webapp: WebApp,
    form,
    name: str,
    changes: Callable[[], dict],
    saved: str,
) -> HttpResponse:
    """One form of the app's page: a valid one's ``changes()`` through the one update action,
    then back to the page with ``saved``; else the page again, the form (``name`` in the
    template) showing the action's error beside its field."""
    if form.is_valid():
        try:
            actions.do_update_webapp(webapp, changes(), actor=request.user, origin=_origin(request))
        except actions.ActionError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, exc.message)
        else:
            messages.success(request, saved)
            return redirect("webapp-detail", username=request.user.username, domain=webapp.domain)
    return _render_detail(request, webapp, **{name: form})


def _render_detail(request: HttpRequest, webapp: WebApp, **forms) -> HttpResponse:
    forms.setdefault("form", WebAppUpdateForm(initial=_settings_initial(webapp)))
    forms.setdefault("protection_form", PasswordProtectionForm(initial=_protection_initial(webapp)))
    forms.setdefault("server_form", AppServerForm(initial=_server_initial(webapp)))
    row = _app_rows(request, [webapp])[0]
    context = {
        **row,
        **forms,
        "row": row,
        "reloads": webapp.reloads.select_related("user")[:10],
        "server": actions.server_settings(webapp),
        "app_logs": logs_for(webapp.domain, row["backend"]),
        **_https_context(webapp),
        "log_listing": listing_for(webapp.domain, row["backend"]),
        "static_rows": [
            (
                m,
                StaticMappingForm(
                    initial={"url": m.url, "path": m.path, "cache_control": m.cache_control},
                    prefix=f"m{m.pk}",
                ),
            )
            for m in webapp.static_files.all()
        ],
        "static_form": StaticMappingForm(prefix="new"),
    }
    return render(
        request, "webapps/detail.html", context, status=400 if request.method == "POST" else 200
    )


def _settings_initial(webapp: WebApp) -> dict:
    return {
        "source_directory": webapp.source_directory,
        "wsgi_entry": webapp.wsgi_entry,
        "python_version": webapp.python_version,
        "virtualenv_path": webapp.virtualenv_path,
        "enabled": webapp.enabled,
    }


def _server_initial(webapp: WebApp) -> dict:
    return {name: getattr(webapp, name) for name in actions.SERVER_FIELDS}


def _protection_initial(webapp: WebApp) -> dict:
    return {
        "password_protection_enabled": webapp.password_protection_enabled,
        "password_protection_username": webapp.password_protection_username,
    }


@login_required
@require_POST
def webapp_protection(request: HttpRequest, username: str, domain: str) -> HttpResponse:
    webapp = access.owned_webapp(request.user, username, domain, "webapp.update", _origin(request))
    form = PasswordProtectionForm(request.POST)
    saved = f"Saved the password protection of {webapp.domain_display}."
    return _update_from_form(request, webapp, form, "protection_form", form.changes, saved)


@login_required
@require_POST
def webapp_server(request: HttpRequest, username: str, domain: str) -> HttpResponse:
    """The app server's settings; they take effect at the app's next reload."""
    webapp = access.owned_webapp(request.user, username, domain, "webapp.update", _origin(request))
    form = AppServerForm(request.POST)
    saved = f"Saved the app server settings of {webapp.domain_display}: reload it to apply them."
    return _update_from_form(request, webapp, form, "server_form", lambda: form.cleaned_data, saved)


def _set_enabled(request: HttpRequest, username: str, domain: str, enabled: bool) -> HttpResponse:
    action = "webapp.enable" if enabled else "webapp.disable"
    webapp = access.owned_webapp(request.user, username, domain, action, _origin(request))
    actions.do_set_webapp_enabled(webapp, enabled, actor=request.user, origin=_origin(request))
    state = "enabled" if enabled else "disabled: its visitors get a page saying so"
    messages.success(request, f"{webapp.domain_display} is {state}.")
    return redirect(_back(request))


@login_required
@require_POST
def webapp_enable(request: HttpRequest, username: str, domain: str) -> HttpResponse:
    return _set_enabled(request, username, domain, True)


@login_required
@require_POST
def webapp_disable(request: HttpRequest, username: str, domain: str) -> HttpResponse:
    return _set_enabled(request, username, domain, False)


@login_required
@require_POST
def webapp_reload(request: HttpRequest, username: str, domain: str) -> HttpResponse:
    webapp = access.owned_webapp(request.user, username, domain, "webapp.reload", _origin(request))
    try:
        event = actions.do_reload_webapp(webapp, actor=request.user, origin=_origin(request))
    except actions.ReloadThrottled as exc:
        if isinstance(exc, actions.ReloadInFlight):
            text = f"{str(exc).capitalize()}."
        else:
            text = f"Too many reloads: try again in {exc.retry_after} s."
        response: HttpResponse
        if _wants_json(request):
            response = JsonResponse({"status": "ERROR", "detail": text}, status=429)
        else:
            response = HttpResponse(text, status=429, content_type="text/plain; charset=utf-8")
        response["Retry-After"] = str(exc.retry_after)
        return response
    if _wants_json(request):
        return JsonResponse(
            {
                "status": "OK" if event.ok else "ERROR",
                "ok": event.ok,
                **event.report(),
                "message": event.message,
                "log_tail": event.log_tail,
            }
        )
    if event.ok:
        messages.success(request, f"{webapp.domain_display}: {event.summary()}.")
    else:
        messages.error(request, f"{webapp.domain_display}: {event.summary()}")
    return redirect(_back(request))


def _back(request: HttpRequest) -> str:
    """Where a form came from (one of our own pages), else the Web tab."""
    wanted = request.POST.get("next", "")
    if url_has_allowed_host_and_scheme(wanted, allowed_hosts=None) and wanted.startswith("/"):
        return wanted
    return reverse("webapp-list", kwargs={"username": request.user.username})


@login_required
@require_POST
def webapp_delete(request: HttpRequest, username: str, domain: str) -> HttpResponse:
    webapp = access.owned_webapp(request.user, username, domain, "webapp.delete", _origin(request))
    shown = webapp.domain_display
    actions.do_delete_webapp(webapp, actor=request.user, origin=_origin(request))
    messages.success(request, f"Deleted {shown} (its files are kept).")
    return redirect("webapp-list", username=request.user.username)


def _https_context(webapp: WebApp) -> dict:
    return {
        "certificate": Certificate.objects.filter(webapp=webapp).first(),
        "acme_enabled": bool(settings.ACME_DIRECTORY_URL),
    }


@login_required
@require_POST
@sensitive_post_parameters("private_key")
def webapp_ssl(request: HttpRequest, username: str, domain: str) -> HttpResponse:
    """The Web tab's HTTPS section: upload, automatic, remove, force HTTPS (one action each)."""
    what = request.POST.get("action", "")
    audit_action = {"delete": "webapp.ssl.delete", "force_https": "webapp.update"}.get(
        what, "webapp.ssl.set"
    )
    webapp = access.owned_webapp(request.user, username, domain, audit_action, _origin(request))
    back = redirect(
        reverse("webapp-detail", kwargs={"username": request.user.username,
                                         "domain": webapp.domain}) + "#https"
    )  # fmt: skip
    try:
        if what == "upload":
            tls.do_set_certificate(
                webapp,
                request.POST.get("cert", ""),
                request.POST.get("private_key", ""),
                actor=request.user,
                origin=_origin(request),
            )
            messages.success(request, f"{webapp.domain_display}: certificate installed.")
        elif what == "auto":
            tls.do_request_auto_certificate(webapp, actor=request.user, origin=_origin(request))
            messages.success(request, f"{webapp.domain_display}: automatic certificate ordered.")
        elif what == "delete":
            tls.do_delete_certificate(webapp, actor=request.user, origin=_origin(request))
            messages.success(request, f"{webapp.domain_display}: certificate removed.")
        elif what == "force_https":
            forced = request.POST.get("force_https") == "on"
            actions.do_update_webapp(
                webapp, {"force_https": forced}, actor=request.user, origin=_origin(request)
            )
            state = "redirected to HTTPS" if forced else "served over plain HTTP too"
            messages.success(request, f"{webapp.domain_display}: plain HTTP is {state}.")
        else:
            return HttpResponse("unknown action", status=400, content_type="text/plain")
    except actions.ActionError as exc:
        messages.error(request, f"{webapp.domain_display}: {exc.message}")
        return back
    return back


@login_required
@require_POST
def static_files(request: HttpRequest, username: str, domain: str) -> HttpResponse:
    """Add (``op=add``), change (``op=edit``, ``id``) or remove (``op=remove``, ``id``) one."""
    op = request.POST.get("op", "")
    action = {"add": "static.create", "edit": "static.update"}.get(op, "static.delete")
    webapp = access.owned_webapp(request.user, username, domain, action, _origin(request))
    back = redirect("webapp-detail", username=request.user.username, domain=webapp.domain)
    mapping = None
    if op in ("edit", "remove"):
        mapping = StaticFileMapping.objects.filter(webapp=webapp, pk=request.POST.get("id")).first()
        if mapping is None or not str(request.POST.get("id", "")).isdigit():
            raise Http404("No such static files mapping.")
        mapping.webapp = webapp
    elif op != "add":
        return HttpResponse("op must be add, edit or remove", status=400)
    if op == "remove":
        actions.do_delete_static_mapping(mapping, actor=request.user, origin=_origin(request))
        messages.success(request, f"Removed the mapping of {mapping.url}.")
        return back
    form = StaticMappingForm(request.POST, prefix="new" if op == "add" else f"m{mapping.pk}")
    if form.is_valid():
        try:
            if mapping is None:
                mapping = actions.do_create_static_mapping(
                    webapp, **form.cleaned_data, actor=request.user, origin=_origin(request)
                )
            else:
                actions.do_update_static_mapping(
                    mapping, form.cleaned_data, actor=request.user, origin=_origin(request)
                )
        except actions.ActionError as exc:
            messages.error(request, f"{exc.field or 'mapping'}: {exc.message}")
        else:
            messages.success(request, f"Saved the mapping of {mapping.url}.")
            return back
    else:
        for field, errors in form.errors.items():
            messages.error(request, f"{field}: {' '.join(errors)}")
    return back


TAIL_BYTES = 64 * 1024  # what the log page shows at first


def _owned_log(request: HttpRequest, username: str, domain: str, name: str):
    webapp = access.owned_webapp(request.user, username, domain, "logs.read", _origin(request))
    parsed = applogs.parse_name(name)
    if parsed is None or parsed[0] != webapp.domain:
        raise Http404("No such log file.")
    backend = serving_backend(published_table(), webapp.domain)
    if not backend:
        raise Http404("No backend serves this app, so it has no logs.")
    return webapp, parsed[1], parsed[2], backend


@login_required
@require_GET
def webapp_log(request: HttpRequest, username: str, domain: str, name: str) -> HttpResponse:
    """A log's last 64 KiB, refreshable; ``?after=<offset>`` with JSON accepted: what follows."""
    webapp, kind, index, backend = _owned_log(request, username, domain, name)
    after = request.GET.get("after", "")
    try:
        if after.isdigit() and len(after) < 19:
            data, offset, size = node_client.read_log(
                webapp.domain, kind, index, int(after), 256 * 1024, backend=backend
            )
            return JsonResponse(
                {"text": data.decode("utf-8", "replace"), "offset": offset, "size": size}
            )
        _, _, size = node_client.read_log(webapp.domain, kind, index, 0, 0, backend=backend)
        start = max(0, size - TAIL_BYTES)
        data, offset, size = node_client.read_log(
            webapp.domain, kind, index, start, TAIL_BYTES, backend=backend
        )
    except (ControlError, OSError, ValueError) as exc:
        return HttpResponse(f"Could not read the log on {backend}: {exc}", status=502)
    text = data.decode("utf-8", "replace") if index < 2 else "(compressed: download it)"
    if start and "\n" in text:
        text = text.split("\n", 1)[1]  # from the first whole line
    context = {
        "app": webapp,
        "name": name,
        "backend": backend,
        "text": text,
        "offset": offset,
        "size": size,
        "follow": index == 0,
    }
    return render(request, "webapps/log.html", context)


@login_required
@require_GET
def webapp_log_download(request: HttpRequest, username: str, domain: str, name: str):
    webapp, kind, index, backend = _owned_log(request, username, domain, name)
    try:
        return applogs.download_response(webapp.domain, kind, index, backend, name)
    except (ControlError, OSError, ValueError) as exc:
        return HttpResponse(f"Could not read the log on {backend}: {exc}", status=502)


@require_GET
def api_docs(request: HttpRequest) -> HttpResponse:
    """A plain reference page built from the OpenAPI schema (no CDN, no JavaScript)."""
    schema = SchemaGenerator().get_schema(request=None, public=True)
    components = schema.get("components", {}).get("schemas", {})
    endpoints = []
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            body = operation.get("requestBody", {}).get("content", {})
            ref = next(iter(body.values()), {}).get("schema", {}).get("$ref", "")
            fields = components.get(ref.rsplit("/", 1)[-1], {}).get("properties", {}) if ref else {}
            endpoints.append(
                {
                    "method": method.upper(),
                    "path": path,
                    "summary": operation.get("summary", ""),
                    "fields": sorted(fields),
                    "responses": sorted(operation.get("responses", {})),
                }
            )
    return render(request, "webapps/api_docs.html", {"endpoints": endpoints})
