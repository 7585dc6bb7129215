"""Shared JWT auth: token lookup with its source, claim rules, settings and their aliases."""

from __future__ import annotations

from dataclasses import dataclass, field

import jwt
import pytest

from ofa_contract.auth import AuthError, Authorizer, AuthSettings, find_token
from ofa_contract.settings import from_env


@dataclass
class FakeRequest:
    headers: dict[str, str] = field(default_factory=dict)
    query_params: dict[str, str] = field(default_factory=dict)
    cookies: dict[str, str] = field(default_factory=dict)


def test_find_token_order_and_source() -> None:
    assert find_token(FakeRequest(headers={"authorization": "Bearer abc "}), "c") == (
        "abc",
        "header",
    )
    both = FakeRequest(query_params={"token": "q"}, cookies={"c": "k"})
    assert find_token(both, "c") == ("q", "query")
    assert find_token(FakeRequest(cookies={"c": "k"}), "c") == ("k", "cookie")
    assert find_token(FakeRequest(headers={"authorization": "Basic x"}), "c") == (None, "")


def test_authorizer_rules() -> None:
    auth = Authorizer.from_settings(AuthSettings(secret="s" * 32))
    token = jwt.encode({"assets": ["A*"], "groups": ["wc1"]}, "s" * 32, algorithm="HS256")
    auth.check(token, "A1", None)
    auth.check(token, "B1", "wc1")
    with pytest.raises(AuthError) as forbidden:
        auth.check(token, "B1", None)
    assert forbidden.value.status == 403
    with pytest.raises(AuthError) as missing:
        auth.check(None, "A1", None)
    assert missing.value.status == 401
    Authorizer().check(None, "A1", None)  # no key: auth off


def test_settings_use_jwt_prefix_with_old_names_as_aliases() -> None:
    s = from_env(AuthSettings, environ={"EDGE_JWT_SECRET": "old", "JWT_AUDIENCE": "aud"})
    assert (s.secret, s.audience, s.token_cookie) == ("old", "aud", "ofa_token")
    s2 = from_env(AuthSettings, environ={"ROUTER_TOKEN_COOKIE": "ck"})
    assert s2.token_cookie == "ck"
