"""Optional JWT auth with the edge's rules (one rule set for the whole service).

The verification and the claim rules are the edge's (:class:`edge.auth.Authorizer`): claims
``assets`` and ``groups`` hold fnmatch patterns. The router additionally needs to know where the
token came from, so that a token sent in a header or cookie can be passed on in a redirect (a
redirected EventSource request carries neither to another origin).
"""

from __future__ import annotations

from collections.abc import Mapping

from edge.auth import AuthError, Authorizer

__all__ = ["AuthError", "Authorizer", "find_token"]


def find_token(
    headers: Mapping[str, str], query: Mapping[str, str], cookies: Mapping[str, str], cookie: str
) -> tuple[str | None, str]:
    """(token, where it came from: ``"header"``, ``"query"``, ``"cookie"`` or ``""``)."""
    auth = headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip(), "header"
    if query.get("token"):
        return query["token"], "query"
    if cookies.get(cookie):
        return cookies[cookie], "cookie"
    return None, ""
