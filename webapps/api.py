"""API v0 views: authorise, call one action, render. Paths and shapes follow the hosting API
that existing scripts and client libraries speak (see docs/api.md)."""

from __future__ import annotations

from django.utils.decorators import method_decorator
from django.views.decorators.debug import sensitive_post_parameters
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    inline_serializer,
)
from rest_framework import exceptions, generics, permissions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from panel.accounts.models import Via
from panel.accounts.origin import Origin
from webapps import access, actions, applogs, node_client, tls
from webapps.models import StaticFileMapping, WebApp, attach_last_reloads
from webapps.node.control import ControlError
from webapps.node.outcome import Result
from webapps.routes import published_table, serving_backend
from webapps.serializers import (
    SSLInfoSerializer,
    SSLInputSerializer,
    StaticFileMappingInputSerializer,
    StaticFileMappingSerializer,
    WebAppCreateSerializer,
    WebAppSerializer,
    WebAppUpdateSerializer,
)


def _validation_error(exc: actions.ActionError) -> exceptions.ValidationError:
    return exceptions.ValidationError({exc.field or "non_field_errors": [exc.message]})


class OwnsPath(permissions.BasePermission):
    """``/user/<username>/`` must be the caller; anything else is a 404 (and audited)."""

    def has_permission(self, request: Request, view) -> bool:
        access.check_path_user(
            request.user, view.kwargs["username"], view.audit_action(), view.origin()
        )
        return True

    def has_object_permission(self, request: Request, view, obj: WebApp) -> bool:
        return obj.owner_id == request.user.pk


class WebAppAPIView(generics.GenericAPIView):
    permission_classes = [permissions.IsAuthenticated, OwnsPath]
    serializer_class = WebAppSerializer
    # Audit action name per HTTP method, for refused attempts.
    actions_by_method = {
        "GET": "webapp.read",
        "HEAD": "webapp.read",
        "OPTIONS": "webapp.read",
        "POST": "webapp.create",
        "PUT": "webapp.update",
        "PATCH": "webapp.update",
        "DELETE": "webapp.delete",
    }

    def audit_action(self) -> str:
        return self.actions_by_method.get(self.request.method, "webapp.read")

    def origin(self) -> Origin:
        return Origin.from_request(self.request, Via.API)

    def get_queryset(self):
        return WebApp.objects.filter(owner=self.request.user).select_related("owner")

    def get_object(self) -> WebApp:
        webapp = access.owned_webapp(
            self.request.user,
            self.kwargs["username"],
            self.kwargs["domain"],
            self.audit_action(),
            self.origin(),
        )
        self.check_object_permissions(self.request, webapp)
        return webapp

    def render_context(self) -> dict:
        # One read of the route table per response, for every app's "backend".
        return {**self.get_serializer_context(), "route_table": published_table()}

    def render_app(self, webapp: WebApp, code: int = status.HTTP_200_OK) -> Response:
        return Response(WebAppSerializer(webapp, context=self.render_context()).data, code)


class WebAppListView(WebAppAPIView):
    @extend_schema(responses=WebAppSerializer(many=True), summary="List your web apps")
    def get(self, request: Request, username: str) -> Response:
        webapps = attach_last_reloads(list(self.get_queryset()))
        return Response(WebAppSerializer(webapps, many=True, context=self.render_context()).data)

    @extend_schema(
        request=WebAppCreateSerializer,
        responses={201: WebAppSerializer},
        summary="Create a web app",
    )
    def post(self, request: Request, username: str) -> Response:
        serializer = WebAppCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            fields = dict(serializer.validated_data)
            webapp = actions.do_create_webapp(
                fields.pop("domain_name"), actor=request.user, origin=self.origin(), **fields
            )
        except actions.ActionError as exc:
            raise _validation_error(exc) from None
        return self.render_app(webapp, status.HTTP_201_CREATED)


class WebAppDetailView(WebAppAPIView):
    @extend_schema(summary="Read a web app")
    def get(self, request: Request, username: str, domain: str) -> Response:
        return self.render_app(self.get_object())

    @extend_schema(request=WebAppUpdateSerializer, summary="Change a web app")
    def patch(self, request: Request, username: str, domain: str) -> Response:
        webapp = self.get_object()
        # Partial whatever the body's encoding: a field left out keeps its stored value.
        serializer = WebAppUpdateSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        try:
            actions.do_update_webapp(
                webapp, dict(serializer.validated_data), actor=request.user, origin=self.origin()
            )
        except actions.ActionError as exc:
            raise _validation_error(exc) from None
        return self.render_app(webapp)

    @extend_schema(request=WebAppUpdateSerializer, summary="Change a web app (same as PATCH)")
    def put(self, request: Request, username: str, domain: str) -> Response:
        return self.patch(request, username, domain)

    @extend_schema(
        request=None, responses={204: None}, summary="Delete a web app (its files are kept)"
    )
    def delete(self, request: Request, username: str, domain: str) -> Response:
        actions.do_delete_webapp(self.get_object(), actor=request.user, origin=self.origin())
        return Response(status=status.HTTP_204_NO_CONTENT)


ReloadResponse = inline_serializer(
    "ReloadResponse",
    {
        "status": serializers.ChoiceField(["OK", "ERROR"]),
        "result": serializers.ChoiceField([str(r) for r in Result]),
        "backend": serializers.CharField(),
        "duration_ms": serializers.IntegerField(
            allow_null=True, help_text="null when nothing was restarted (not running there)"
        ),
        "workers": serializers.IntegerField(allow_null=True),
        "generation": serializers.IntegerField(
            allow_null=True, help_text="the generation now serving (its X-App-Generation)"
        ),
        "misrouted": serializers.BooleanField(
            help_text="the node's route table sends the app's traffic to another node"
        ),
        "summary": serializers.CharField(),
        "warning": serializers.CharField(required=False),
        "detail": serializers.CharField(required=False),
        "log_tail": serializers.CharField(required=False),
    },
)


class WebAppReloadView(WebAppAPIView):
    actions_by_method = {"POST": "webapp.reload"}

    @extend_schema(
        request=None,
        responses={
            200: ReloadResponse,
            429: OpenApiResponse(description="Too many reloads; see Retry-After"),
            502: OpenApiResponse(ReloadResponse, description="The node could not reload it"),
        },
        summary="Reload a web app on the backend that serves it",
    )
    def post(self, request: Request, username: str, domain: str) -> Response:
        webapp = self.get_object()
        try:
            event = actions.do_reload_webapp(webapp, actor=request.user, origin=self.origin())
        except actions.ReloadThrottled as exc:
            raise exceptions.Throttled(wait=exc.retry_after) from None
        body = {"status": "OK", **event.report()}
        if event.ok:
            return Response(body)
        body.update(status="ERROR", detail=event.message, log_tail=event.log_tail)
        return Response(body, status.HTTP_502_BAD_GATEWAY)


StatusResponse = inline_serializer("StatusResponse", {"status": serializers.ChoiceField(["OK"])})


class WebAppEnableView(WebAppAPIView):
    """``POST .../enable/`` and ``.../disable/``: PythonAnywhere's answer, ``{"status": "OK"}``."""

    enabled = True
    actions_by_method = {"POST": "webapp.enable"}

    @extend_schema(request=None, responses={200: StatusResponse}, summary="Enable a web app")
    def post(self, request: Request, username: str, domain: str) -> Response:
        actions.do_set_webapp_enabled(
            self.get_object(), self.enabled, actor=request.user, origin=self.origin()
        )
        return Response({"status": "OK"})


class WebAppDisableView(WebAppEnableView):
    enabled = False
    actions_by_method = {"POST": "webapp.disable"}

    @extend_schema(
        request=None,
        responses={200: StatusResponse},
        summary="Disable a web app (its visitors get a page saying so)",
    )
    def post(self, request: Request, username: str, domain: str) -> Response:
        return super().post(request, username, domain)


class StaticFilesAPIView(WebAppAPIView):
    serializer_class = StaticFileMappingSerializer
    actions_by_method = {
        "GET": "static.read",
        "HEAD": "static.read",
        "OPTIONS": "static.read",
        "POST": "static.create",
        "PUT": "static.update",
        "PATCH": "static.update",
        "DELETE": "static.delete",
    }

    def get_mapping(self) -> StaticFileMapping:
        webapp = self.get_object()
        mapping = StaticFileMapping.objects.filter(webapp=webapp, pk=self.kwargs["id"]).first()
        if mapping is None:
            raise exceptions.NotFound("No such static files mapping.")
        mapping.webapp = webapp
        return mapping

    def input(self, *, partial: bool = False) -> dict:
        serializer = StaticFileMappingInputSerializer(data=self.request.data, partial=partial)
        serializer.is_valid(raise_exception=True)
        return dict(serializer.validated_data)


class StaticFilesListView(StaticFilesAPIView):
    @extend_schema(
        responses=StaticFileMappingSerializer(many=True), summary="List an app's static mappings"
    )
    def get(self, request: Request, username: str, domain: str) -> Response:
        mappings = StaticFileMapping.objects.filter(webapp=self.get_object())
        return Response(StaticFileMappingSerializer(mappings, many=True).data)

    @extend_schema(
        request=StaticFileMappingInputSerializer,
        responses={201: StaticFileMappingSerializer},
        summary="Map a URL prefix to a directory (served by the node, no reload needed)",
    )
    def post(self, request: Request, username: str, domain: str) -> Response:
        webapp = self.get_object()
        try:
            mapping = actions.do_create_static_mapping(
                webapp, **self.input(), actor=request.user, origin=self.origin()
            )
        except actions.ActionError as exc:
            raise _validation_error(exc) from None
        return Response(StaticFileMappingSerializer(mapping).data, status.HTTP_201_CREATED)


class StaticFilesDetailView(StaticFilesAPIView):
    @extend_schema(summary="Read a static files mapping")
    def get(self, request: Request, username: str, domain: str, id: int) -> Response:
        return Response(StaticFileMappingSerializer(self.get_mapping()).data)

    def _update(self, partial: bool) -> Response:
        mapping = self.get_mapping()
        try:
            actions.do_update_static_mapping(
                mapping, self.input(partial=partial), actor=self.request.user, origin=self.origin()
            )
        except actions.ActionError as exc:
            raise _validation_error(exc) from None
        return Response(StaticFileMappingSerializer(mapping).data)

    @extend_schema(request=StaticFileMappingInputSerializer, summary="Replace a mapping")
    def put(self, request: Request, username: str, domain: str, id: int) -> Response:
        return self._update(partial=False)

    @extend_schema(request=StaticFileMappingInputSerializer, summary="Change a mapping")
    def patch(self, request: Request, username: str, domain: str, id: int) -> Response:
        return self._update(partial=True)

    @extend_schema(responses={204: None}, summary="Remove a static files mapping")
    def delete(self, request: Request, username: str, domain: str, id: int) -> Response:
        mapping = self.get_mapping()
        actions.do_delete_static_mapping(mapping, actor=request.user, origin=self.origin())
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- logs, as PythonAnywhere's files API shows them ------------------------------------------


class LogFilesAPIView(WebAppAPIView):
    actions_by_method = {"GET": "logs.read", "HEAD": "logs.read", "DELETE": "logs.delete"}

    def owned_log(self, name: str) -> tuple[WebApp, str, int, str]:
        """The app, kind, index and serving backend a public log name points at, else 404."""
        parsed = applogs.parse_name(name)
        if parsed is None:
            raise exceptions.NotFound(f"{applogs.LOG_DIR}{name} is not a web app's log file.")
        domain, kind, index = parsed
        webapp = access.owned_webapp(
            self.request.user, self.kwargs["username"], domain, self.audit_action(), self.origin()
        )
        backend = serving_backend(published_table(), webapp.domain)
        if not backend:
            raise exceptions.NotFound("No backend serves this app, so it has no logs.")
        return webapp, kind, index, backend


def _node_failed(exc: Exception) -> exceptions.APIException:
    error = exceptions.APIException(f"the node could not be asked: {exc}")
    error.status_code = status.HTTP_502_BAD_GATEWAY
    return error


class FilesTreeView(LogFilesAPIView):
    @extend_schema(
        parameters=[OpenApiParameter("path", str, required=True, description="/var/log/")],
        responses={200: serializers.ListSerializer(child=serializers.CharField())},
        summary="List your apps' log files (PythonAnywhere's files/tree/ for /var/log/)",
    )
    def get(self, request: Request, username: str) -> Response:
        path = request.query_params.get("path", "")
        if path.rstrip("/") + "/" != applogs.LOG_DIR:
            raise exceptions.NotFound(f"only {applogs.LOG_DIR} (your apps' logs) is listed here")
        table = published_table()
        names = []
        for webapp in self.get_queryset():
            backend = serving_backend(table, webapp.domain)
            if not backend:
                continue
            try:
                listing = node_client.log_files(webapp.domain, backend=backend)
            except (ControlError, OSError, ValueError) as exc:
                raise _node_failed(exc) from None
            names += [
                applogs.LOG_DIR + applogs.public_name(webapp.domain, f["kind"], f["index"])
                for f in listing
            ]
        return Response(sorted(names))


class LogFileView(LogFilesAPIView):
    @extend_schema(
        responses={(200, "application/octet-stream"): OpenApiResponse(description="the file")},
        summary="Download one log file whole",
    )
    def get(self, request: Request, username: str, name: str):
        webapp, kind, index, backend = self.owned_log(name)
        try:
            return applogs.download_response(webapp.domain, kind, index, backend, name)
        except (ControlError, OSError, ValueError) as exc:
            raise _node_failed(exc) from None

    @extend_schema(responses={204: None}, summary="Delete a log file (the current one is emptied)")
    def delete(self, request: Request, username: str, name: str) -> Response:
        webapp, kind, index, backend = self.owned_log(name)
        try:
            deleted = actions.do_delete_log(
                webapp, kind, index, backend=backend, actor=request.user, origin=self.origin()
            )
        except (ControlError, OSError) as exc:
            raise _node_failed(exc) from None
        if not deleted:
            raise exceptions.NotFound(f"{applogs.LOG_DIR}{name} does not exist.")
        return Response(status=status.HTTP_204_NO_CONTENT)


# A certificate chain and its key fit in far less; anything bigger is refused before parsing.
MAX_SSL_UPLOAD = 256 * 1024


@method_decorator(sensitive_post_parameters("private_key"), name="dispatch")
class WebAppSSLView(WebAppAPIView):
    """HTTPS for the app's domain: the certificate presented for it by every proxy."""

    actions_by_method = {
        "GET": "webapp.ssl.read",
        "HEAD": "webapp.ssl.read",
        "POST": "webapp.ssl.set",
        "DELETE": "webapp.ssl.delete",
    }

    def _info(self, webapp: WebApp) -> Response:
        row = getattr(webapp, "certificate", None) if hasattr(webapp, "certificate") else None
        if row is None:
            raise exceptions.NotFound(
                "This web app has no certificate of its own; the platform's is presented."
            )
        return Response(SSLInfoSerializer(row).data)

    @extend_schema(
        responses={200: SSLInfoSerializer, 404: OpenApiResponse(description="No certificate")},
        summary="Read the app's certificate",
    )
    def get(self, request: Request, username: str, domain: str) -> Response:
        return self._info(self.get_object())

    @extend_schema(
        request=SSLInputSerializer,
        responses={200: SSLInfoSerializer},
        summary="Upload a certificate and key, or ask for an automatic one",
    )
    def post(self, request: Request, username: str, domain: str) -> Response:
        webapp = self.get_object()
        length = request.META.get("CONTENT_LENGTH") or "0"
        if not length.isdigit() or int(length) > MAX_SSL_UPLOAD:
            raise exceptions.ValidationError(
                {"non_field_errors": [f"the upload is {length} bytes; a certificate and its "
                                      f"key take at most {MAX_SSL_UPLOAD} bytes"]}
            )  # fmt: skip
        serializer = SSLInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        try:
            if data.get("cert_type") == "letsencrypt-auto-renew":
                tls.do_request_auto_certificate(webapp, actor=request.user, origin=self.origin())
            else:
                tls.do_set_certificate(
                    webapp,
                    data["cert"],
                    data["private_key"],
                    actor=request.user,
                    origin=self.origin(),
                )
        except actions.ActionError as exc:
            raise _validation_error(exc) from None
        webapp.refresh_from_db()
        return self._info(WebApp.objects.select_related("certificate").get(pk=webapp.pk))

    @extend_schema(responses={204: None}, summary="Remove the app's certificate")
    def delete(self, request: Request, username: str, domain: str) -> Response:
        webapp = self.get_object()
        if not tls.do_delete_certificate(webapp, actor=request.user, origin=self.origin()):
            raise exceptions.NotFound("This web app has no certificate of its own.")
        return Response(status=status.HTTP_204_NO_CONTENT)
