"""The strict input base every app's API serializers use, and the token input shape.

Input serializers only check types and refuse unknown fields (a misspelt field is an error, not
silently ignored); the rules live in the apps' actions, shared with the Web tab and the CLI.
"""

from __future__ import annotations

from rest_framework import serializers

from panel.accounts.actions import MAX_TOKEN_DAYS

# Form posts from a signed-in browser carry the CSRF token as a field; it is not data.
IGNORED_INPUT_FIELDS = frozenset({"csrfmiddlewaretoken"})


class StrictCharField(serializers.CharField):
    """A CharField that refuses numbers, lists and objects instead of turning them into text."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictInputSerializer(serializers.Serializer):
    def to_internal_value(self, data):
        if not hasattr(data, "keys"):
            raise serializers.ValidationError(
                {"non_field_errors": ["Expected a JSON object or form fields."]}
            )
        unknown = sorted(set(data.keys()) - set(self.fields) - IGNORED_INPUT_FIELDS)
        if unknown:
            raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        return super().to_internal_value(data)


class TokenCreateSerializer(StrictInputSerializer):
    name = StrictCharField(required=False, allow_blank=True, max_length=100)
    expires_in_days = serializers.IntegerField(
        required=False, min_value=1, max_value=MAX_TOKEN_DAYS
    )
    scope = serializers.ChoiceField(choices=["full", "reload"], required=False)
