"""``Authorization: Token <key>`` for API v0, with hashed, expiring, revocable keys."""

from __future__ import annotations

import hmac
from datetime import timedelta

from django.utils import timezone
from rest_framework import authentication, exceptions

from panel.accounts.models import TOKEN_PREFIX, ApiToken, hash_token

# last_used_at is refreshed at most this often, so a busy CI script does not write every call.
LAST_USED_RESOLUTION = timedelta(seconds=60)


class TokenAuthentication(authentication.BaseAuthentication):
    keyword = "Token"

    view = None

    def authenticate(self, request):
        self.view = (getattr(request, "parser_context", None) or {}).get("view")
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword.lower().encode():
            return None  # not ours: let session authentication try
        if len(header) != 2:
            raise exceptions.AuthenticationFailed(
                "Invalid token header: use 'Authorization: Token <key>'."
            )
        try:
            key = header[1].decode("ascii")
        except UnicodeError:
            raise exceptions.AuthenticationFailed("Invalid token.") from None
        return self.authenticate_key(key)

    def authenticate_key(self, key: str):
        if not key.startswith(TOKEN_PREFIX):
            raise exceptions.AuthenticationFailed("Invalid token.")
        digest = hash_token(key)
        token = ApiToken.objects.select_related("user").filter(key_hash=digest).first()
        # The lookup is by hash (an attacker cannot steer it); compare again in constant time.
        if token is None or not hmac.compare_digest(token.key_hash, digest):
            raise exceptions.AuthenticationFailed("Invalid token.")
        now = timezone.now()
        if token.revoked_at is not None:
            raise exceptions.AuthenticationFailed("This token has been revoked.")
        if token.expires_at is not None and token.expires_at <= now:
            raise exceptions.AuthenticationFailed("This token has expired.")
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed("This account is disabled.")
        if token.scope != ApiToken.Scope.FULL and not getattr(
            self.view, "reload_tokens_allowed", False
        ):
            # Fail closed: only a view that says so takes a reload-only token (the reload).
            raise exceptions.PermissionDenied("This token may only reload web apps.")
        if token.last_used_at is None or now - token.last_used_at >= LAST_USED_RESOLUTION:
            ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
            token.last_used_at = now
        return token.user, token

    def authenticate_header(self, request) -> str:
        return self.keyword
