"""`ofa-serving edge`: run one SSE edge node (uvicorn + the Litestar app)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from types import FrameType
from typing import Any

import uvicorn

from edge.app import create_app
from edge.settings import EdgeSettings
from edge.transport import TransportCapture
from ofa_contract.settings import CommonSettings, describe, from_env

log = logging.getLogger("ofa_serving.edge.main")


class EdgeServer(uvicorn.Server):
    """uvicorn server that, on SIGTERM/SIGINT, first tells every SSE client to reconnect (so
    EventSource resumes on another edge) and then lets uvicorn stop accepting and drain."""

    def __init__(self, config: uvicorn.Config, on_exit: Any) -> None:
        super().__init__(config)
        self._on_exit = on_exit
        self._loop: asyncio.AbstractEventLoop | None = None
        self.stop_signals: list[int] = []

    async def serve(self, sockets: Any = None) -> None:
        """Run until stopped."""
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """Signal handler: close the streams, then the normal uvicorn shutdown."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._on_exit)
        # Not recorded in uvicorn's _captured_signals: uvicorn would re-raise the signal after
        # the drain and the process would die "killed by SIGTERM" instead of exiting 0.
        self.stop_signals.append(sig)
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True
        else:
            self.should_exit = True


def build_server(settings: EdgeSettings, common: CommonSettings) -> EdgeServer:
    """A ready-to-run server for ``settings`` (tests run it in-process)."""
    app = create_app(settings, common)
    config = uvicorn.Config(
        TransportCapture(app),
        host=settings.host,
        port=settings.port,
        lifespan="on",
        access_log=False,
        log_config=None,
        timeout_graceful_shutdown=max(1, int(settings.shutdown_grace_s)),
        backlog=4096,
        timeout_keep_alive=5,
    )
    server = EdgeServer(config, app.state.edge.begin_shutdown)
    server.app_state = app.state.edge  # type: ignore[attr-defined]
    return server


def main(argv: list[str]) -> int:
    """Entry point of `ofa-serving edge`."""
    parser = argparse.ArgumentParser(
        prog="ofa-serving edge",
        description="Run one SSE edge node. Settings come from EDGE_* variables:\n"
        + "\n".join(f"  {n} (default {d})" for n, d, _ in describe(EdgeSettings, "EDGE_")),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", help="override EDGE_HOST")
    parser.add_argument("--port", type=int, help="override EDGE_PORT")
    args = parser.parse_args(argv)
    settings = from_env(EdgeSettings, "EDGE_")
    common = from_env(CommonSettings)
    changes: dict[str, Any] = {}
    if args.host:
        changes["host"] = args.host
    if args.port is not None:
        changes["port"] = args.port
    if changes:
        import msgspec

        settings = msgspec.structs.replace(settings, **changes)
    server = build_server(settings, common)
    server.run()  # uvicorn picks uvloop when installed (loop="auto")
    if server.stop_signals:
        log.info("edge stopped after signal %s", server.stop_signals[0])
    return 0 if server.started else 1
