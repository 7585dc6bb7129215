"""The worker registry (``ofa_bridges``) survives a NATS outage longer than a client's reconnect
budget: the heartbeat comes back (regression: the registry connection used nats.py's default
policy, gave up after ~2 minutes, was never replaced, and the failure was swallowed, so
``/groups`` showed no bridge owner while data still flowed)."""

from __future__ import annotations

import time

import msgspec
import nats

from compose.local_infra import NatsProcess
from ofa_contract.registry import BridgeEntry
from ofa_contract.runtime.connect import ReconnectPolicy
from tests.bridge.support import InProcessWorker, bridge_layout, bridge_settings
from tests.helpers import Endpoints
from tests.support.wait import wait_until


async def _entry(nats_url: str, bucket: str, key: str) -> BridgeEntry | None:
    try:
        nc = await nats.connect(nats_url, connect_timeout=1, max_reconnect_attempts=0)
    except Exception:
        return None
    try:
        kv = await nc.jetstream().key_value(bucket)
        raw = (await kv.get(key)).value
        return msgspec.json.decode(raw or b"", type=BridgeEntry)
    except Exception:
        return None
    finally:
        await nc.close()


async def test_heartbeat_returns_after_the_registry_client_gave_up(
    infra: Endpoints, nats_private: NatsProcess, unique: str
) -> None:
    s = bridge_settings(unique, heartbeat_s=0.5)
    layout = bridge_layout(unique)
    worker = InProcessWorker(infra.kafka, nats_private.url, s, layout)
    # A small reconnect budget so that the client gives up within the test (the default is to
    # reconnect forever; giving up must not matter either way).
    worker.worker.registry.policy = ReconnectPolicy(
        max_reconnect_attempts=2, reconnect_time_wait=0.2
    )
    async with worker as w:

        async def registered() -> bool:
            return await _entry(nats_private.url, layout.bridges_bucket, s.worker_id) is not None

        await wait_until(registered, timeout=30, what="the first heartbeat")
        nats_private.kill()

        async def gave_up() -> bool:
            ctl = w.worker.registry.client
            return ctl is None or ctl.is_closed

        await wait_until(
            gave_up, timeout=30, what="the registry client to exhaust its reconnect budget"
        )
        back = int(time.time() * 1000)
        nats_private.start()
        await nats_private.wait_ready()

        async def fresh() -> bool:
            e = await _entry(nats_private.url, layout.bridges_bucket, s.worker_id)
            return e is not None and e.updated_ms >= back

        await wait_until(fresh, timeout=30, what="a heartbeat after the outage")
        assert w.metric("ofa_bridge_heartbeat_failures_total") >= 1
