"""Staff API: the backend pool (CRUD through ``routing.pool.actions``) and the route table.

Staff only: anonymous callers get 401, signed-in non-staff 403; an unknown backend is a 404.
Every change answers with what it did: the new version and how many apps moved where.
``?dry_run=1`` on POST, PATCH and DELETE answers the same without changing anything.
"""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import exceptions, permissions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from panel.accounts.models import Via
from panel.accounts.origin import Origin
from routing.hosts import InvalidHost, canonical_host
from routing.pool import actions, tables
from routing.pool.fleet import fleet_status
from routing.pool.models import Backend
from routing.pool.serializers import (
    BackendCreateSerializer,
    BackendSerializer,
    BackendUpdateSerializer,
    RouteTableSerializer,
)
from webapps.routes import published_table

DRY_RUN = OpenApiParameter(
    "dry_run", OpenApiTypes.BOOL, description="show the effect without changing anything"
)
FORCE = OpenApiParameter(
    "force", OpenApiTypes.BOOL, description="allow leaving the pool without an active backend"
)
ChangeResponse = inline_serializer(
    "PoolChange",
    {
        "dry_run": serializers.BooleanField(),
        "version": serializers.IntegerField(allow_null=True),
        "summary": serializers.CharField(),
        "apps_total": serializers.IntegerField(),
        "apps_moved": serializers.IntegerField(),
        "moves": serializers.ListField(child=serializers.DictField()),
        "backend": BackendSerializer(allow_null=True),
    },
)


def _flag(request: Request, name: str) -> bool:
    raw = request.query_params.get(name, "")
    if raw.lower() in {"", "0", "false", "no"}:
        return False
    if raw.lower() in {"1", "true", "yes"}:
        return True
    raise exceptions.ValidationError({name: [f"{raw!r} is not a boolean (use 1 or 0)"]})


def _pool_error(exc: actions.ActionError) -> exceptions.APIException:
    if isinstance(exc, actions.UnknownBackend):
        return exceptions.NotFound(exc.message)
    return exceptions.ValidationError({exc.field or "non_field_errors": [exc.message]})


class StaffAPIView(APIView):
    permission_classes = [permissions.IsAuthenticated, permissions.IsAdminUser]

    def origin(self) -> Origin:
        return Origin.from_request(self.request, Via.API)

    def render_change(self, change: actions.Change, dry_run: bool, code=status.HTTP_200_OK):
        backend = Backend.objects.filter(name=change.backend).first() if not dry_run else None
        context = {"apps": tables.apps_per_backend(change.after)} if backend else {}
        body = {
            "dry_run": dry_run,
            "version": change.version,
            "summary": change.summary if change.changed else f"{change.backend}: no change",
            "apps_total": change.plan.total,
            "apps_moved": change.plan.moved,
            "moves": change.plan.counts(),
            "backend": BackendSerializer(backend, context=context).data if backend else None,
        }
        return Response(body, code)


class BackendListView(StaffAPIView):
    @extend_schema(responses=BackendSerializer(many=True), summary="List the backend pool")
    def get(self, request: Request) -> Response:
        backends = Backend.objects.order_by("name")
        context = {"apps": tables.apps_per_backend()}
        return Response(BackendSerializer(backends, many=True, context=context).data)

    @extend_schema(
        request=BackendCreateSerializer,
        parameters=[DRY_RUN],
        responses={201: ChangeResponse, 200: ChangeResponse},
        summary="Add a backend",
    )
    def post(self, request: Request) -> Response:
        dry_run = _flag(request, "dry_run")
        serializer = BackendCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        spec = dict(serializer.validated_data)
        try:
            if dry_run:
                change = actions.preview("backend.add", spec)
            else:
                change = actions.do_add_backend(
                    spec.pop("name"),
                    spec.pop("address"),
                    actor=request.user,
                    origin=self.origin(),
                    **spec,
                )
        except actions.ActionError as exc:
            raise _pool_error(exc) from None
        return self.render_change(
            change, dry_run, status.HTTP_200_OK if dry_run else status.HTTP_201_CREATED
        )


class BackendDetailView(StaffAPIView):
    def get_backend(self, name: str) -> Backend:
        backend = Backend.objects.filter(name=name).first()
        if backend is None:
            raise exceptions.NotFound(f"no backend named {name!r}")
        return backend

    @extend_schema(responses=BackendSerializer, summary="Read a backend")
    def get(self, request: Request, name: str) -> Response:
        backend = self.get_backend(name)
        context = {"apps": tables.apps_per_backend()}
        return Response(BackendSerializer(backend, context=context).data)

    @extend_schema(
        request=BackendUpdateSerializer,
        parameters=[DRY_RUN],
        responses=ChangeResponse,
        summary="Change a backend's address, weight, state or notes",
    )
    def patch(self, request: Request, name: str) -> Response:
        self.get_backend(name)
        dry_run = _flag(request, "dry_run")
        serializer = BackendUpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        fields = dict(serializer.validated_data)
        force = fields.pop("force", False)
        try:
            if dry_run:
                change = actions.preview("backend.update", {"name": name, **fields}, force)
            else:
                change = actions.do_update_backend(
                    name, actor=request.user, origin=self.origin(), force=force, **fields
                )
        except actions.ActionError as exc:
            raise _pool_error(exc) from None
        return self.render_change(change, dry_run)

    @extend_schema(
        request=None,
        parameters=[DRY_RUN, FORCE],
        responses={200: ChangeResponse},
        summary="Remove a backend (its apps move to the others)",
    )
    def delete(self, request: Request, name: str) -> Response:
        self.get_backend(name)
        dry_run = _flag(request, "dry_run")
        force = _flag(request, "force")
        try:
            if dry_run:
                change = actions.preview("backend.remove", {"name": name}, force)
            else:
                change = actions.do_remove_backend(
                    name, actor=request.user, origin=self.origin(), force=force
                )
        except actions.ActionError as exc:
            raise _pool_error(exc) from None
        return self.render_change(change, dry_run)


class RoutingView(StaffAPIView):
    @extend_schema(
        responses=inline_serializer(
            "Routing",
            {
                "committed": RouteTableSerializer(),
                "published": RouteTableSerializer(allow_null=True),
                "in_sync": serializers.BooleanField(),
            },
        ),
        summary="The committed route table and the one the proxies read from Redis",
    )
    def get(self, request: Request) -> Response:
        committed = tables.committed_table()
        published = published_table()
        return Response(
            {
                "committed": committed.to_dict(),
                "published": published.to_dict() if published is not None else None,
                "in_sync": published is not None and published.version == committed.version,
            }
        )


class FleetView(StaffAPIView):
    @extend_schema(
        parameters=[
            OpenApiParameter(
                "version", OpenApiTypes.INT, description="follow this version (default: current)"
            )
        ],
        responses=inline_serializer(
            "Fleet",
            {
                "version": serializers.IntegerField(),
                "published": serializers.IntegerField(allow_null=True),
                "converged": serializers.BooleanField(),
                "summary": serializers.CharField(),
                "elapsed_ms": serializers.IntegerField(allow_null=True),
                "counts": serializers.DictField(),
                "members": serializers.ListField(child=serializers.DictField()),
                "backends": serializers.ListField(child=serializers.DictField()),
                "unrouted_apps": serializers.IntegerField(),
                "pending_moves": serializers.ListField(child=serializers.DictField()),
                # Nodes running apps unsandboxed; proxies whose nearest certificate expiry is
                # within the renewal window (renew_days_before days).
                "isolation_off": serializers.ListField(child=serializers.CharField()),
                "certificates_expiring": serializers.ListField(child=serializers.CharField()),
                "renew_days_before": serializers.IntegerField(),
                "error": serializers.CharField(allow_null=True),
            },
        ),
        summary="Every proxy and node, the table version each holds, and the pool's apps",
    )
    def get(self, request: Request) -> Response:
        raw = request.query_params.get("version", "")
        if raw and not (raw.isdigit() and len(raw) <= 20):
            raise exceptions.ValidationError({"version": [f"{raw!r} is not a version number"]})
        return Response(fleet_status(int(raw) if raw else None).to_dict())


class WhereView(StaffAPIView):
    @extend_schema(
        parameters=[OpenApiParameter("domain", OpenApiTypes.STR, required=True)],
        responses=inline_serializer(
            "Where",
            {
                "domain": serializers.CharField(),
                "version": serializers.IntegerField(),
                "backend": serializers.DictField(allow_null=True),
                "ranking": serializers.ListField(child=serializers.CharField()),
            },
        ),
        summary="The backend that serves a domain, and the fallback order",
    )
    def get(self, request: Request) -> Response:
        raw = request.query_params.get("domain", "")
        if not raw:
            raise exceptions.ValidationError({"domain": ["domain is required (?domain=...)"]})
        try:
            key = canonical_host(raw)
        except InvalidHost as exc:
            raise exceptions.ValidationError({"domain": [str(exc)]}) from None
        table = tables.committed_table()
        backend = table.backend_for(key)
        return Response(
            {
                "domain": key,
                "version": table.version,
                "backend": backend.to_dict() if backend is not None else None,
                "ranking": [b.name for b in table.ranking(key)],
            }
        )
