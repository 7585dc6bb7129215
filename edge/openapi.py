"""The edge's OpenAPI document, served at ``/schema/openapi.json``.

Written by hand rather than generated: the stream handlers read the raw query and headers
(``Last-Event-ID`` as a header or ``last_event_id`` query parameter, the token from a header,
query or cookie) so that every refusal is our own JSON with a ``detail``, and Litestar's
generator would see no parameters at all. The e2e fuzz test drives the edge from this document,
so a parameter missing here goes unfuzzed.
"""

from __future__ import annotations

from typing import Any

#: Event ids are stream sequence numbers; negative mode sends everything else.
_EVENT_ID = {"type": "string", "pattern": "^[0-9]{1,19}$"}


def _stream_params(with_group: bool) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = [
        {"name": "asset_uuid", "in": "query", "required": True, "schema": {"type": "string"}},
        {"name": "id", "in": "query", "schema": {"type": "string"}},
        {"name": "snapshot", "in": "query", "schema": {"type": "string"}},
        {"name": "last_event_id", "in": "query", "schema": _EVENT_ID},
        {"name": "token", "in": "query", "schema": {"type": "string"}},
        {"name": "Last-Event-ID", "in": "header", "schema": _EVENT_ID},
        {"name": "Authorization", "in": "header", "schema": {"type": "string"}},
    ]
    if with_group:
        params.append(
            {
                "name": "group",
                "in": "path",
                "required": True,
                "description": "the group name encoded with ofa_contract.naming.encode_token "
                "(plain names such as WC1 encode to themselves)",
                "schema": {"type": "string"},
            }
        )
    return params


def _op(params: list[dict[str, Any]] | None = None, stream: bool = False) -> dict[str, Any]:
    ok = "text/event-stream" if stream else "application/json"
    err = {"content": {"application/json": {"schema": {"type": "object"}}}}
    return {
        "get": {
            "parameters": params or [],
            "responses": {
                "200": {"description": "ok", "content": {ok: {"schema": {"type": "string"}}}},
                "400": {"description": "bad request", **err},
                "401": {"description": "unauthenticated", **err},
                "403": {"description": "forbidden", **err},
                "503": {"description": "unavailable", **err},
            },
        }
    }


def openapi_document(version: str) -> dict[str, Any]:
    """The OpenAPI 3.0 document of the edge's HTTP interface."""
    return {
        "openapi": "3.0.3",
        "info": {"title": "ofa-serving edge", "version": version},
        "paths": {
            "/asset_stream": _op(_stream_params(False), stream=True),
            "/group/{group}/asset_stream": _op(_stream_params(True), stream=True),
            "/health": _op(),
            "/ready": _op(),
            "/info": _op(),
            "/metrics": _op(),
            "/schema/openapi.json": _op(),
        },
    }
