"""JWT authorisation of streams, shared by the edge and the router (off unless a key is set).

The token comes from ``Authorization: Bearer``, the ``token`` query parameter or a cookie
(EventSource cannot set headers); :func:`find_token` also says where it came from, so the router
can pass a header or cookie token on in a redirect. Claims ``assets`` and ``groups`` are lists of
fnmatch patterns; a stream is allowed when the asset uuid matches an ``assets`` pattern or, on
the group route, the group matches a ``groups`` pattern. On ``/asset_stream`` (no group in the
request) only a ``groups`` pattern of ``*`` stands in for the group.
"""

from __future__ import annotations

from collections.abc import Mapping
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol

import jwt
import msgspec

TokenSource = Literal["header", "query", "cookie", ""]


class AuthSettings(msgspec.Struct, kw_only=True, frozen=True):
    """JWT settings, one set for the whole service (``JWT_*``; the edge's ``EDGE_JWT_*`` and the
    router's ``ROUTER_JWT_*`` are deprecated aliases)."""

    env_prefix: ClassVar[str] = "JWT_"
    env_names: ClassVar[dict[str, str]] = {"token_cookie": "JWT_TOKEN_COOKIE"}
    #: Until issue 10 the edge and the router each read these under their own prefix
    #: (``EDGE_JWT_SECRET``, ``ROUTER_TOKEN_COOKIE``...).
    env_aliases: ClassVar[dict[str, tuple[str, ...]]] = {
        field: (f"EDGE_{old}", f"ROUTER_{old}")
        for field, old in (
            ("secret", "JWT_SECRET"),
            ("public_key", "JWT_PUBLIC_KEY"),
            ("audience", "JWT_AUDIENCE"),
            ("issuer", "JWT_ISSUER"),
            ("token_cookie", "TOKEN_COOKIE"),
        )
    }

    #: HS256 secret; setting it (or ``JWT_PUBLIC_KEY``) turns authentication on.
    secret: str = ""
    #: RS256/ES256 public key (PEM text, or ``@/path/to/key.pem``).
    public_key: str = ""
    #: Expected ``aud`` claim, if any.
    audience: str = ""
    #: Expected ``iss`` claim, if any.
    issuer: str = ""
    #: Cookie that may carry the token (EventSource cannot set headers).
    token_cookie: str = "ofa_token"


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

    @classmethod
    def from_settings(cls, settings: AuthSettings) -> Authorizer:
        """The authorizer configured by ``settings`` (disabled when no key is set)."""
        return cls(
            secret=settings.secret,
            public_key=settings.public_key,
            audience=settings.audience,
            issuer=settings.issuer,
        )

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


class RequestLike(Protocol):
    """What :func:`find_token` reads (a Litestar ``Request`` fits)."""

    @property
    def headers(self) -> Mapping[str, str]: ...
    @property
    def query_params(self) -> Mapping[str, Any]: ...
    @property
    def cookies(self) -> Mapping[str, str]: ...


def find_token(request: RequestLike, cookie: str) -> tuple[str | None, TokenSource]:
    """(token, where it came from: ``"header"``, ``"query"``, ``"cookie"``, or ``""`` if none)."""
    auth = request.headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip(), "header"
    query = request.query_params.get("token")
    if isinstance(query, str) and query:
        return query, "query"
    if request.cookies.get(cookie):
        return request.cookies[cookie], "cookie"
    return None, ""
