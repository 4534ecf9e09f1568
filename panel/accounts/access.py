"""Who may act under ``/user/<username>/``: the signed-in user only, in any case of the name.

Anything else is a 404, so an outsider cannot even learn that a user or a token exists; each
refusal is written to the audit trail first.
"""

from __future__ import annotations

from django.http import Http404

from panel.accounts.actions import record_denied
from panel.accounts.models import ApiToken, User
from panel.accounts.origin import Origin


def check_path_user(user: User, path_username: str, action: str, origin: Origin) -> None:
    """The ``<username>`` in ``/user/<username>/...`` must be the signed-in user (any case)."""
    if path_username.lower() != user.username.lower():
        record_denied(user, action, f"user {path_username}", origin, "path username is not theirs")
        raise Http404("No such user here.")


def owned_token(user: User, token_id: int, origin: Origin) -> ApiToken:
    token = ApiToken.objects.filter(user=user, pk=token_id).first()
    if token is None:
        record_denied(user, "token.revoke", f"token {token_id}", origin, "no such token of theirs")
        raise Http404("No such token.")
    return token
