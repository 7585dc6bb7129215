"""The group route takes the group as an encoded token, so any group name routes (a router puts
``encode_token(group)`` in ``/group/<token>/asset_stream``); plain names still work as they are."""

from __future__ import annotations

import json

import jwt

from compose.local_infra import NatsProcess
from edge.app import group_name
from ofa_contract.auth import AuthSettings
from ofa_contract.naming import encode_token
from tests.edge.conftest import running_edge
from tests.edge.publisher import Publisher
from tests.edge.sse_client import sse_get
from tests.edge.test_stream import wait_subscribed

SECRET = "group-path-secret-group-path-secret"
GROUP = "Halle Süd/2"


def _bearer(**claims: object) -> dict[str, str]:
    return {"Authorization": "Bearer " + jwt.encode({"sub": "t", **claims}, SECRET, "HS256")}


def test_group_name_decodes_tokens_and_keeps_plain_names() -> None:
    assert encode_token(GROUP) != GROUP
    assert group_name(encode_token(GROUP)) == GROUP
    assert group_name("WC1") == "WC1"
    # Not an encoded token (an old router sent the name as it is): taken as the plain name.
    assert group_name("Halle Süd") == "Halle Süd"


async def test_encoded_group_name_routes_and_authorises(nats_private: NatsProcess) -> None:
    pub = await Publisher.connect(nats_private.url)
    try:
        async with running_edge(nats_private.url, auth=AuthSettings(secret=SECRET)) as edge:
            url = f"{edge.url}/group/{encode_token(GROUP)}/asset_stream?asset_uuid=HS-1"
            # The decoded name is what the token's group patterns are matched against.
            c = await sse_get(url, _bearer(groups=["Halle Süd/*"]))
            assert c.status == 200
            await wait_subscribed(c)
            seq = await pub.publish("HS-1", "Temp", 1)
            ev = await c.next_event(10)
            assert ev is not None and int(ev.id) == seq
            await c.close()
            denied = await sse_get(url, _bearer(groups=["Halle Nord/*"]))
            assert denied.status == 403
            assert GROUP in json.loads(denied.body)["detail"]
            plain = await sse_get(
                f"{edge.url}/group/WC1/asset_stream?asset_uuid=HS-1", _bearer(groups=["WC1"])
            )
            assert plain.status == 200
            await plain.close()
    finally:
        await pub.close()
