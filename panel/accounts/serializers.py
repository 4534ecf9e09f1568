"""The strict input base every app's API serializers use, and the token input shape.

Input serializers only check types and refuse unknown fields (a misspelt field is an error, not
silently ignored); the rules live in the apps' actions, shared with the Web tab and the CLI.
"""

from __future__ import annotations

from rest_framework import serializers
from rest_framework.utils import html

from panel.accounts.actions import MAX_TOKEN_DAYS

# Form posts from a signed-in browser carry the CSRF token as a field; it is not data.
IGNORED_INPUT_FIELDS = frozenset({"csrfmiddlewaretoken"})


class StrictCharField(serializers.CharField):
    """A CharField that refuses numbers, lists and objects instead of turning them into text."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class FormSafeBooleanField(serializers.BooleanField):
    """A BooleanField that reads the same in a form body as in JSON: ``true``/``false`` (JSON
    booleans; in a form ``true``/``false`` in any case, or a checkbox's ``on``), nothing else.

    DRF's reads a boolean left out of a form body as False (an HTML checkbox left unticked);
    an API client that leaves a field out means "leave it alone", whatever the encoding, so
    here an omitted field is omitted: its default on create, its stored value on update.
    """

    default_empty_html = serializers.empty
    # JSON says true or false; a form can only spell them, and a checkbox says "on".
    FORM_TRUE = frozenset({"true", "on"})
    FORM_FALSE = frozenset({"false", "off"})

    def to_internal_value(self, data):
        if isinstance(data, bool):
            return data
        if isinstance(data, str) and html.is_html_input(self.root.initial_data):
            if data.lower() in self.FORM_TRUE:
                return True
            if data.lower() in self.FORM_FALSE:
                return False
        self.fail("invalid", input=data)


class StrictIntegerField(serializers.IntegerField):
    """An IntegerField that reads the same in a form body as in JSON: a JSON integer, or in a
    form a string of ASCII digits. Not ``true``, ``4.0``, ``"4"`` in JSON, nor ``" 4"`` or
    ``"٤"`` in a form (DRF's takes all of those)."""

    MAX_DIGITS = 18  # more is never a count or a number of seconds

    def to_internal_value(self, data):
        if isinstance(data, str) and html.is_html_input(self.root.initial_data):
            if not (data.isascii() and data.isdigit() and len(data) <= self.MAX_DIGITS):
                self.fail("invalid")
            data = int(data)
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictInputSerializer(serializers.Serializer):
    """Refuses unknown fields by name. ``read_only_fields`` are fields the API returns but
    nobody sets: sending one is a 400 that says so, not "Unknown field"."""

    read_only_fields: tuple[str, ...] = ()

    def to_internal_value(self, data):
        if not hasattr(data, "keys"):
            raise serializers.ValidationError(
                {"non_field_errors": ["Expected a JSON object or form fields."]}
            )
        given = set(data.keys()) - IGNORED_INPUT_FIELDS
        errors = {
            name: ["Read-only field: it cannot be set."]
            for name in sorted(given & set(self.read_only_fields) - set(self.fields))
        }
        unknown = sorted(given - set(self.fields) - set(self.read_only_fields))
        errors.update({name: ["Unknown field."] for name in unknown})
        if errors:
            raise serializers.ValidationError(errors)
        return super().to_internal_value(data)


class TokenCreateSerializer(StrictInputSerializer):
    name = StrictCharField(required=False, allow_blank=True, max_length=100)
    expires_in_days = serializers.IntegerField(
        required=False, min_value=1, max_value=MAX_TOKEN_DAYS
    )
    scope = serializers.ChoiceField(choices=["full", "reload"], required=False)
