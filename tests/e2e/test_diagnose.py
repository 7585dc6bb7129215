"""The chaos test's diagnosis reads the stack's own stream.

The stack namespaces every name, the stream too; the diagnosis once looked the missing events
up in the default layout's ``OFA_ASSETS`` stream, which does not exist there, swallowed the
error and reported every missing event as ``stream=ABSENT`` (records lost between a derived
topic and JetStream) while the stream held them.
"""

from __future__ import annotations

import nats
import pytest
from nats.js.api import StreamConfig

from compose.local_infra import NatsProcess
from ofa_contract.layout import Layout
from tests.e2e.diagnose import stream_index


async def test_stream_index_reads_the_namespaced_stream(
    nats_private: NatsProcess, unique: str
) -> None:
    layout = Layout().namespaced(f"t_diag_{unique}_")
    nc = await nats.connect(nats_private.url)
    try:
        js = nc.jetstream()
        await js.add_stream(StreamConfig(name=layout.stream, subjects=[layout.stream_subjects()]))
        for seq in (4, 5, 6):
            subject = layout.stream_subject("SIM-ASSET-008", "avail")
            await js.publish(subject, b'{"attributes": {"seq": %d}}' % seq)
    finally:
        await nc.close()

    stored = await stream_index(nats_private.url, layout, "SIM-ASSET-008")

    assert stored == {4: 1, 5: 2, 6: 3}


async def test_stream_index_raises_when_the_stream_is_missing(
    nats_private: NatsProcess, unique: str
) -> None:
    # locate() reports the error as stream=UNREADABLE(...), never as ABSENT.
    layout = Layout().namespaced(f"t_diag_{unique}_")
    with pytest.raises(Exception, match="not found"):
        await stream_index(nats_private.url, layout, "SIM-ASSET-008")
