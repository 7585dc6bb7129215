"""JWT authorisation of streams (off unless a key is configured).

The token comes from ``Authorization: Bearer``, the ``token`` query parameter or a cookie
(EventSource cannot set headers). Claims ``assets`` and ``groups`` are lists of fnmatch patterns;
a stream is allowed when the asset uuid matches an ``assets`` pattern or, on the group route,
the group matches a ``groups`` pattern. On ``/asset_stream`` (no group in the request) only a
``groups`` pattern of ``*`` stands in for the group.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import jwt


class AuthError(Exception):
    """Refusal with the HTTP status to answer (401: no/bad token, 403: not allowed)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def _patterns(claims: dict[str, Any], name: str) -> list[str]:
    val = claims.get(name)
    if isinstance(val, str):
        return [val]
    if isinstance(val, list):
        return [v for v in val if isinstance(v, str)]
    return []


class Authorizer:
    """Checks tokens against one key (HS256 secret, or an RS256/ES256 public key)."""

    def __init__(
        self, *, secret: str = "", public_key: str = "", audience: str = "", issuer: str = ""
    ) -> None:
        if public_key.startswith("@"):
            public_key = Path(public_key[1:]).read_text()
        self.enabled = bool(secret or public_key)
        self._key: str = public_key or secret
        self._algorithms = ["RS256", "ES256"] if public_key else ["HS256"]
        self._audience = audience or None
        self._issuer = issuer or None

    def check(self, token: str | None, asset_uuid: str, group: str | None) -> None:
        """Raise :class:`AuthError` unless ``token`` allows ``asset_uuid`` (or ``group``)."""
        if not self.enabled:
            return
        if not token:
            raise AuthError(
                401, "authentication required: send a JWT (Authorization: Bearer, token=, cookie)"
            )
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=self._algorithms,
                audience=self._audience,
                issuer=self._issuer,
            )
        except jwt.PyJWTError as exc:
            raise AuthError(401, f"invalid token: {exc}") from None
        if any(fnmatchcase(asset_uuid, p) for p in _patterns(claims, "assets")):
            return
        groups = _patterns(claims, "groups")
        if group is not None and any(fnmatchcase(group, p) for p in groups):
            return
        if group is None and "*" in groups:
            return
        where = f"asset {asset_uuid!r}" + (f" in group {group!r}" if group is not None else "")
        raise AuthError(403, f"token does not allow {where}")
