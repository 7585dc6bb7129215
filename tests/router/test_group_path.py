"""The group in the edge path: every group name the contract allows (any non-empty text) goes
into ``/group/<token>/asset_stream`` as ``encode_token(group)`` and comes back out unchanged
with ``decode_token``, whatever an HTTP stack decodes on the way."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from hypothesis import example, given
from hypothesis import strategies as st

from ofa_contract.naming import decode_token
from router.app import edge_stream_url

#: Group names as the contract allows them: any non-empty text (UTF-8, so no lone surrogates).
GROUP_NAMES = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=80)


@given(GROUP_NAMES)
@example("Halle Süd/2")
@example("Paint Shop.2")
@example("%2F..%2F")
@example("a?b#c&d=e")
@example("_2F")
def test_group_round_trips_through_the_edge_path(group: str) -> None:
    url = edge_stream_url("http://edge:8080", group, "asset_uuid=A1&id=Temp")
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.query) == (
        "http",
        "edge:8080",
        "asset_uuid=A1&id=Temp",
    )
    # What the edge's router sees once its HTTP server has percent-decoded the path.
    segments = unquote(parts.path).split("/")
    assert segments[:2] == ["", "group"] and segments[3:] == ["asset_stream"]
    assert decode_token(segments[2]) == group


@given(st.from_regex(r"[A-Za-z0-9-]{1,40}", fullmatch=True))
def test_plain_group_names_are_unchanged(group: str) -> None:
    assert edge_stream_url("", group, "q=1") == f"/group/{group}/asset_stream?q=1"
