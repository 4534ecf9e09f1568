"""Staff API shapes for the pool and the route table.

Input serializers check types and refuse unknown fields; the rules (names, addresses, weights,
the last active backend) live in ``routing.pool.actions`` so the admin, the CLI and the API agree.
"""

from __future__ import annotations

from rest_framework import serializers

from panel.accounts.serializers import StrictCharField, StrictInputSerializer
from routing.pool.models import Backend, Revision
from routing.table import MAX_WEIGHT, STATES


class BackendSerializer(serializers.ModelSerializer):
    apps = serializers.SerializerMethodField(help_text="apps routed to it in the committed table")

    class Meta:
        model = Backend
        fields = ["name", "address", "weight", "state", "notes", "apps", "created_at", "updated_at"]

    def get_apps(self, backend: Backend) -> int:
        return self.context.get("apps", {}).get(backend.name, 0)


class BackendCreateSerializer(StrictInputSerializer):
    name = StrictCharField(max_length=63)
    address = StrictCharField(max_length=300)
    weight = serializers.IntegerField(required=False, default=1, min_value=1, max_value=MAX_WEIGHT)
    state = serializers.ChoiceField(choices=STATES, required=False, default="active")
    notes = StrictCharField(required=False, allow_blank=True, default="", max_length=10_000)


class BackendUpdateSerializer(StrictInputSerializer):
    address = StrictCharField(required=False, max_length=300)
    weight = serializers.IntegerField(required=False, min_value=1, max_value=MAX_WEIGHT)
    state = serializers.ChoiceField(choices=STATES, required=False)
    notes = StrictCharField(required=False, allow_blank=True, max_length=10_000)
    force = serializers.BooleanField(
        required=False, default=False, help_text="allow leaving no active backend"
    )

    def to_internal_value(self, data):
        if hasattr(data, "keys") and "name" in data:
            raise serializers.ValidationError(
                {"name": ["A backend cannot be renamed; add a new one and remove this one."]}
            )
        return super().to_internal_value(data)


class MoveSerializer(serializers.Serializer):
    source = serializers.CharField(allow_null=True, source="from")
    target = serializers.CharField(allow_null=True, source="to")
    count = serializers.IntegerField()


class RevisionSerializer(serializers.ModelSerializer):
    class Meta:
        model = Revision
        fields = [
            "version",
            "created_at",
            "actor_username",
            "via",
            "action",
            "backend_name",
            "summary",
            "changes",
            "apps_total",
            "apps_moved",
            "moves",
        ]


class BackendTableSerializer(serializers.Serializer):
    name = serializers.CharField()
    address = serializers.CharField()
    weight = serializers.IntegerField()
    state = serializers.CharField()


class RouteTableSerializer(serializers.Serializer):
    version = serializers.IntegerField()
    algorithm = serializers.CharField()
    backends = BackendTableSerializer(many=True)
    published_at = serializers.CharField(allow_null=True)
