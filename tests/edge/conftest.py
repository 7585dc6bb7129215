"""Fixtures for edge tests: an edge served by uvicorn in-process on a free port."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from compose.local_infra import free_port
from edge.main import build_server
from edge.node import EdgeNode
from edge.settings import EdgeSettings
from ofa_contract.auth import AuthSettings
from ofa_contract.layout import Layout
from ofa_contract.runtime import cancel_and_wait
from ofa_contract.runtime.serve import serve
from ofa_contract.settings import CommonSettings
from tests.support.wait import wait_until


class RunningEdge:
    def __init__(self, url: str, state: EdgeNode) -> None:
        self.url = url
        self.state = state

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float:
        v = self.state.metrics.registry.get_sample_value(name, labels or {})
        return float(v or 0.0)


@contextlib.asynccontextmanager
async def running_edge(
    nats_url: str,
    *,
    auth: AuthSettings | None = None,
    layout: Layout | None = None,
    **overrides: Any,
) -> AsyncIterator[RunningEdge]:
    port = free_port()
    overrides.setdefault("id", f"test-edge-{port}")
    settings = EdgeSettings(port=port, gc_freeze=False, **overrides)
    server, node = build_server(
        settings, CommonSettings(nats_url=nats_url), layout=layout, auth=auth
    )
    stop = asyncio.Event()
    task = asyncio.create_task(
        serve(server, on_stop=node.begin_shutdown, stop=stop, install_signals=False)
    )

    def up() -> bool:
        if task.done():
            raise RuntimeError(f"edge exited during start-up: {task.result()}")
        return bool(server.started)

    await wait_until(up, timeout=20, what="edge started", interval=0.02)
    try:
        yield RunningEdge(f"http://127.0.0.1:{port}", node)
    finally:
        stop.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(task), 20)
        await cancel_and_wait(task)
