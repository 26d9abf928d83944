"""API tokens that end: after the idle timeout since last use, at a maximum age, and with the account's credentials.

``Authorization: Token <key>`` as with DRF's TokenAuthentication, checked against
:class:`platform_core.accounts.models.ApiToken` (which stores only a digest of the key).
"""

from __future__ import annotations

from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication

from platform_core.accounts.middleware import is_background
from platform_core.accounts.models import ApiToken, User
from platform_core.accounts.services import (
    api_token_digest,
    api_token_expire,
    api_token_is_expired,
    api_token_touch,
    api_tokens_revoke,
)

EXPIRED_MESSAGE = "token expired: sign in again"


class ExpiringTokenAuthentication(TokenAuthentication):
    keyword = "Token"

    def authenticate(self, request):
        self._background = is_background(request)
        return super().authenticate(request)

    def authenticate_credentials(self, key: str) -> tuple[User, ApiToken]:
        token = ApiToken.objects.select_related("user").filter(key_digest=api_token_digest(key)).first()
        if token is None:
            raise exceptions.AuthenticationFailed("invalid token: sign in again", code="invalid_token")
        user = token.user
        if not user.is_active or user.is_locked:
            api_tokens_revoke(user=user, reason="account deactivated" if not user.is_active else "account locked")
            raise exceptions.AuthenticationFailed(EXPIRED_MESSAGE, code="token_expired")
        if api_token_is_expired(token):
            api_token_expire(token=token)
            raise exceptions.AuthenticationFailed(EXPIRED_MESSAGE, code="token_expired")
        if not getattr(self, "_background", False):  # background polls are not activity (as for sessions)
            api_token_touch(token=token)
        return user, token
