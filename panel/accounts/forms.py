"""Account forms: they only carry text; the rules live in panel.accounts.actions and, for
signing in, panel.accounts.backoff."""

from __future__ import annotations

from django import forms
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm

from panel.accounts import backoff
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


class BackoffMixin:
    """Refuses an attempt for a username that must wait (``panel.accounts.backoff``) before
    its password is checked, so such an attempt learns nothing and counts as nothing."""

    backoff_seconds = 0

    def clean(self):
        username = self.cleaned_data.get("username")
        if username:
            self.backoff_seconds = backoff.retry_after(username)
            if self.backoff_seconds:
                raise forms.ValidationError(backoff.message(self.backoff_seconds), code="backoff")
        return super().clean()


class SignInForm(BackoffMixin, AuthenticationForm):
    pass


class AdminSignInForm(BackoffMixin, AdminAuthenticationForm):
    pass
