"""Optional JWT auth, the same rules as the edge's.

A token comes from ``Authorization: Bearer``, the ``token`` query parameter or a cookie
(EventSource cannot set headers). Its claims ``assets`` and ``groups`` are lists of fnmatch
patterns; a request is allowed when the asset matches an ``assets`` pattern or its group matches
a ``groups`` pattern.
"""

from __future__ import annotations

from collections.abc import Mapping
from fnmatch import fnmatchcase
from typing import Any

import jwt


class AuthError(Exception):
    """Raised with the HTTP status (401 or 403) and a detail message."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


class Claims:
    """The parts of a verified token that grant access."""

    def __init__(self, token: str, payload: Mapping[str, Any]) -> None:
        self.token = token
        self.assets = _patterns(payload.get("assets"))
        self.groups = _patterns(payload.get("groups"))

    def allows(self, asset_uuid: str, group: str | None) -> bool:
        """True when the asset or its group matches a pattern of the token."""
        if any(fnmatchcase(asset_uuid, p) for p in self.assets):
            return True
        return group is not None and any(fnmatchcase(group, p) for p in self.groups)


def _patterns(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return []


def find_token(
    headers: Mapping[str, str], query: Mapping[str, str], cookies: Mapping[str, str], cookie: str
) -> tuple[str | None, str]:
    """(token, where it came from: "header", "query", "cookie" or "")."""
    auth = headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip(), "header"
    if query.get("token"):
        return query["token"], "query"
    if cookies.get(cookie):
        return cookies[cookie], "cookie"
    return None, ""


class Authenticator:
    """Verifies tokens with one key; ``enabled`` is False when no key is configured."""

    def __init__(self, key: str, algorithms: list[str]) -> None:
        self.key = key
        self.algorithms = algorithms

    @property
    def enabled(self) -> bool:
        """Auth is on only when a key is configured."""
        return bool(self.key)

    def verify(self, token: str | None) -> Claims:
        """Return the token's claims or raise :class:`AuthError` (401)."""
        if not token:
            raise AuthError(401, "Authentication required: send a bearer token")
        try:
            payload = jwt.decode(token, self.key, algorithms=self.algorithms)
        except jwt.ExpiredSignatureError:
            raise AuthError(401, "Token expired") from None
        except jwt.InvalidTokenError as exc:
            raise AuthError(401, f"Invalid token: {exc}") from None
        return Claims(token, payload)

    def check(self, claims: Claims, asset_uuid: str, group: str | None) -> None:
        """Raise :class:`AuthError` (403) unless ``claims`` allow the asset."""
        if not claims.allows(asset_uuid, group):
            raise AuthError(403, f"Token does not allow asset {asset_uuid!r}")
