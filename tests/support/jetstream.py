"""Reading what a JetStream stream stores, for verdicts and diagnoses."""

from __future__ import annotations

import nats
from nats.aio.msg import Msg


async def stored_messages(
    url: str, stream: str, subjects: str, *, idle_timeout: float = 5.0
) -> list[Msg]:
    """Every message ``stream`` stores on ``subjects``, in stream order (an ordered consumer
    read until nothing is pending, or until no message came for ``idle_timeout`` seconds)."""
    nc = await nats.connect(url, connect_timeout=5, max_reconnect_attempts=2)
    out: list[Msg] = []
    try:
        js = nc.jetstream()
        if (await js.stream_info(stream)).state.messages == 0:
            return out
        sub = await js.subscribe(subjects, stream=stream, ordered_consumer=True)
        try:
            while True:
                try:
                    m = await sub.next_msg(timeout=idle_timeout)
                except nats.errors.TimeoutError:
                    break
                out.append(m)
                if m.metadata.num_pending == 0:
                    break
        finally:
            await sub.unsubscribe()
    finally:
        await nc.close()
    return out
