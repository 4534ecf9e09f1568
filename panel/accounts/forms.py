"""Account page forms: they only carry text; the rules live in panel.accounts.actions."""

from __future__ import annotations

from django import forms

from panel.accounts.actions import MAX_TOKEN_DAYS


class TokenCreateForm(forms.Form):
    name = forms.CharField(max_length=100, required=False)
    expires_in_days = forms.IntegerField(
        min_value=1, max_value=MAX_TOKEN_DAYS, required=False, help_text="Empty: never expires."
    )
