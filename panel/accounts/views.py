"""Signing in, and the account page: create (shown once), list and revoke API tokens. Thin
views: authorise, call one action, render."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from panel.accounts import access, actions
from panel.accounts.forms import SignInForm, TokenCreateForm
from panel.accounts.models import ApiToken, Via
from panel.accounts.origin import Origin


class SignInView(auth_views.LoginView):
    """Django's sign-in page; an attempt the username's back-off refuses answers 429."""

    form_class = SignInForm

    def form_invalid(self, form: SignInForm) -> HttpResponse:
        response = super().form_invalid(form)
        if form.backoff_seconds:
            response.status_code = 429
            response["Retry-After"] = str(form.backoff_seconds)
        return response


def _origin(request: HttpRequest) -> Origin:
    return Origin.from_request(request, Via.UI)


@login_required
@require_http_methods(["GET", "HEAD", "POST"])
def account(request: HttpRequest, username: str) -> HttpResponse:
    action = "token.create" if request.method == "POST" else "account.read"
    access.check_path_user(request.user, username, action, _origin(request))
    form = TokenCreateForm(request.POST or None)
    new_key = None
    if request.method == "POST" and form.is_valid():
        try:
            _, new_key = actions.do_create_token(
                request.user,
                actor=request.user,
                origin=_origin(request),
                name=form.cleaned_data["name"],
                expires_in_days=form.cleaned_data["expires_in_days"],
                scope=form.cleaned_data["scope"] or ApiToken.Scope.FULL,
            )
        except actions.ActionError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, exc.message)
        else:
            form = TokenCreateForm()
    context = {"form": form, "new_key": new_key, "tokens": request.user.api_tokens.all()}
    response = render(request, "accounts/account.html", context)
    # The new key is on this page only: keep it out of every cache.
    response["Cache-Control"] = "no-store"
    return response


@login_required
@require_POST
def token_revoke(request: HttpRequest, username: str, token_id: int) -> HttpResponse:
    access.check_path_user(request.user, username, "token.revoke", _origin(request))
    token = access.owned_token(request.user, token_id, _origin(request))
    actions.do_revoke_token(token, actor=request.user, origin=_origin(request))
    messages.success(request, f"Revoked the token {token.prefix}….")
    return redirect("account", username=request.user.username)
