"""Account page forms: they only carry text; the rules live in panel.accounts.actions."""

from __future__ import annotations

from django import forms

from panel.accounts.actions import DEFAULT_TOKEN_DAYS, MAX_TOKEN_DAYS
from panel.accounts.models import ApiToken


class TokenCreateForm(forms.Form):
    name = forms.CharField(max_length=100, required=False)
    expires_in_days = forms.IntegerField(
        min_value=1,
        max_value=MAX_TOKEN_DAYS,
        required=False,
        help_text=f"Empty: {DEFAULT_TOKEN_DAYS} days.",
    )
    scope = forms.ChoiceField(
        choices=ApiToken.Scope.choices, initial=ApiToken.Scope.FULL, required=False
    )
