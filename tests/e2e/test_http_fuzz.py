"""Property-based HTTP fuzzing (Schemathesis) of the router and the edge: no answer is a 5xx and
every 4xx is JSON with a non-empty ``detail``.

The router is fuzzed from the OpenAPI document it serves at ``/schema/openapi.json``. The edge
serves no OpenAPI (``openapi_config=None``: its handlers read the raw query string), so it is
fuzzed from the OpenAPI document the edge serves at ``/schema/openapi.json`` (edge/openapi.py),
which declares every parameter the edge reads, including the ``Last-Event-ID`` and
``Authorization`` headers.

Both servers run in this process on real infrastructure (a private nats-server with the stream
the bridge would write, real Kafka topics for the router's tables). Schemathesis' requests are
blocking, so the fuzzing runs in a worker thread while the servers keep the event loop.

Streams never end on success, so cases are sent by :func:`_send` instead of ``Case.call``: a
``200 text/event-stream`` answer counts as OK once its first frame (``retry:``, sent when the
edge's live subscription is confirmed) or a closing comment arrives; then the connection is
dropped. Cases run in positive and negative generation modes, plus positive cases pinned to an
asset that really has a group, history and state, so the deep paths (redirect, replay,
snapshot, KV reads) are exercised and not only the "missing parameter" answers.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import jwt
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode

from compose.local_infra import NatsProcess
from ofa_contract.auth import AuthSettings
from tests.edge.conftest import running_edge
from tests.edge.publisher import Publisher
from tests.helpers import Endpoints
from tests.router.harness import real_edge_stack

ASSET = "FUZZ-1"
GROUP = "Fuzz Shop.1"
SECRET = "fuzz-secret-0123456789-0123456789"
#: Examples per operation and generation mode; the whole file stays well under a minute.
EXAMPLES = 40
#: Seconds to wait for the status line or the first bytes of a stream.
READ_TIMEOUT = 5.0


async def _served_schema(base_url: str) -> Any:
    """The edge's own OpenAPI document, fetched without blocking the loop the edge runs on."""
    async with httpx.AsyncClient() as client:
        resp = await client.get(f"{base_url}/schema/openapi.json")
    assert resp.status_code == 200, resp.text
    return schemathesis.openapi.from_dict(resp.json())


def _send(case: Any, base_url: str) -> tuple[int, dict[str, str], bytes]:
    """Send one case; for an event stream, read only until its first frame."""
    kwargs = case.as_transport_kwargs(base_url=base_url)
    kwargs.update(stream=True, allow_redirects=False, timeout=(3, READ_TIMEOUT))
    with requests.Session() as session, session.request(**kwargs) as resp:
        headers = {k.lower(): v for k, v in resp.headers.items()}
        if resp.status_code == 200 and headers.get("content-type", "").startswith(
            "text/event-stream"
        ):
            first = b""
            for chunk in resp.iter_content(chunk_size=None):
                first += chunk
                if b"\n\n" in first:
                    break
            return resp.status_code, headers, first
        return resp.status_code, headers, resp.content


def _check(case: Any, status: int, headers: dict[str, str], body: bytes) -> None:
    where = f"{case.method} {case.formatted_path} query={case.query!r} headers={case.headers!r}"
    assert status < 500, f"{status} on {where}: {body[:500]!r}"
    if 400 <= status < 500:
        assert headers.get("content-type", "").startswith("application/json"), (
            f"{status} without JSON on {where}: {headers} {body[:300]!r}"
        )
        doc = json.loads(body)
        assert isinstance(doc, dict), f"{status} body is not an object on {where}: {body!r}"
        assert isinstance(doc.get("detail"), str) and doc["detail"], (
            f"{status} without a detail on {where}: {body!r}"
        )
    elif status == 200 and headers.get("content-type", "").startswith("text/event-stream"):
        # The first frame is the reconnect delay, or a comment saying why the stream ends.
        assert body.startswith((b"retry:", b":")), f"odd first SSE frame on {where}: {body!r}"
    elif status in (301, 302, 303, 307, 308):
        assert headers.get("location"), f"{status} without Location on {where}"


def _fuzz(schema: Any, base_url: str, pinned: dict[str, Any]) -> dict[str, int]:
    """Run every operation of ``schema``; returns the number of answers by status class."""
    seen: dict[str, int] = {}
    for result in schema.get_all_operations():
        op = result.ok()
        strategies = [op.as_strategy(GenerationMode.POSITIVE)]
        if any(True for _ in op.iter_parameters()):
            # Without parameters there is nothing to make invalid.
            strategies.append(op.as_strategy(GenerationMode.NEGATIVE))
        query = {k: v for k, v in pinned.items() if k in _names(op, "query")}
        path = {k: v for k, v in pinned.items() if k in _names(op, "path")}
        if query:
            strategies.append(
                op.as_strategy(GenerationMode.POSITIVE, query=query, path_parameters=path or None)
            )
        test = _property(base_url, seen)
        for strategy in strategies:
            given(case=strategy)(test)()
    print(f"fuzzed {base_url}: answers by class {seen}")
    return seen


def _names(op: Any, location: str) -> set[str]:
    return {p.name for p in op.iter_parameters() if p.location == location}


def _property(base_url: str, seen: dict[str, int]) -> Callable[..., None]:
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    def test(case: Any) -> None:
        status, headers, body = _send(case, base_url)
        seen[f"{status // 100}xx"] = seen.get(f"{status // 100}xx", 0) + 1
        _check(case, status, headers, body)

    return test


async def _publish_history(pub: Publisher) -> None:
    for i in range(20):
        await pub.publish(ASSET, "Temp", i)
        await pub.publish(ASSET, "avail", "AVAILABLE", upper=False)


async def test_fuzz_edge(nats_private: NatsProcess) -> None:
    pub = await Publisher.connect(nats_private.url)
    try:
        await _publish_history(pub)
        async with running_edge(nats_private.url) as edge:
            schema = await _served_schema(edge.url)
            seen = await asyncio.to_thread(
                _fuzz, schema, edge.url, {"asset_uuid": ASSET, "group": GROUP}
            )
            # The fuzz reached the streams and the refusals, not only one kind of answer.
            assert seen.get("2xx", 0) > 10 and seen.get("4xx", 0) > 10, seen
            assert edge.metric("ofa_edge_resumes_total") > 0
        async with running_edge(nats_private.url, auth=AuthSettings(secret=SECRET)) as edge:
            token = jwt.encode({"sub": "fuzz", "assets": [ASSET]}, SECRET, algorithm="HS256")
            seen = await asyncio.to_thread(
                _fuzz, schema, edge.url, {"asset_uuid": ASSET, "group": GROUP, "token": token}
            )
            assert seen.get("4xx", 0) > 10, seen
    finally:
        await pub.close()


@pytest.mark.parametrize("mode", ["redirect", "proxy"])
async def test_fuzz_router(
    infra: Endpoints, nats_private: NatsProcess, unique: str, mode: str
) -> None:
    async with real_edge_stack(infra.kafka, nats_private.url, unique, ASSET, GROUP, mode=mode) as (
        stack,
        pub,
    ):
        await _publish_history(pub)
        schema = await asyncio.to_thread(
            schemathesis.openapi.from_url, f"{stack.url}/schema/openapi.json"
        )
        ops = {f"{r.ok().method.upper()} {r.ok().path}" for r in schema.get_all_operations()}
        assert {"GET /asset_stream", "GET /asset_state", "GET /groups"} <= ops, ops
        seen = await asyncio.to_thread(_fuzz, schema, stack.url, {"asset_uuid": ASSET})
        # Names longer than a NATS protocol line: answered, and NATS still works afterwards.
        async with httpx.AsyncClient(base_url=stack.url, timeout=10) as c:
            for path in ("/asset_state", "/asset_stream"):
                r = await c.get(f"{path}?asset_uuid={'A' * 6000}")
                assert 400 <= r.status_code < 500, (path, r.status_code, r.text[:200])
                assert r.json()["detail"]
            r = await c.get(f"/asset_state?asset_uuid={ASSET}")
            assert r.status_code == 200, r.text
        assert seen.get("2xx", 0) >= 5 and seen.get("4xx", 0) > 10, seen
        if mode == "redirect":
            assert seen.get("3xx", 0) > 0, seen  # redirects to the edge happened
        else:
            assert stack.service is not None
            proxied = stack.service.metrics.registry.get_sample_value(
                "ofa_router_proxy_streams_total", {"group": GROUP}
            )
            assert proxied, "no stream was proxied to the edge"
