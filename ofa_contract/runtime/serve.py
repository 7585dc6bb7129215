"""One way to run a uvicorn server, with one signal policy for the edge and the router.

SIGTERM or SIGINT: call ``on_stop`` (e.g. tell SSE clients to reconnect elsewhere), then let
uvicorn stop accepting and give open requests ``grace`` seconds; a second signal, or the bound
(``grace`` + :data:`EXTRA_BOUND_S`) passing, forces the exit. The process exits 0 after a signal
(uvicorn's own handlers would re-raise it after the drain, and the process would die "killed by
SIGTERM" instead).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import signal
from collections.abc import Callable
from typing import Any

import uvicorn
from litestar.config.cors import CORSConfig

from ofa_contract.runtime.tasks import cancel_and_wait

#: Seconds allowed beyond the grace period for the lifespan shutdown before the exit is forced.
EXTRA_BOUND_S = 10.0

StopCallback = Callable[[], Any]

log = logging.getLogger("ofa_serving.contract.serve")


def cors_config(origins: list[str]) -> CORSConfig | None:
    """The CORS policy of an HTTP service (``<PREFIX>CORS_ORIGINS``; empty = CORS off).
    EventSource sends no custom headers; a fetch()-based SSE client may send these two."""
    if not origins:
        return None
    return CORSConfig(
        allow_origins=list(origins),
        allow_methods=["GET"],
        allow_headers=["Authorization", "Last-Event-ID"],
        allow_credentials=True,
    )


def build_server(app: Any, host: str, port: int, *, grace: float, **config: Any) -> uvicorn.Server:
    """A uvicorn server for ``app`` that keeps the process' logging and has no access log.

    ``config`` overrides or adds ``uvicorn.Config`` arguments (e.g. ``backlog``).
    """
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "lifespan": "on",
        "access_log": False,
        "log_config": None,  # keep the process' JSON logging
        "timeout_graceful_shutdown": max(1, round(grace)),
        **config,
    }
    server = uvicorn.Server(uvicorn.Config(app, **options))
    # Our handlers (installed by serve) replace uvicorn's, which re-raise the signal at the end.
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
    return server


async def serve(
    server: uvicorn.Server,
    *,
    on_stop: StopCallback | None = None,
    stop: asyncio.Event | None = None,
    install_signals: bool = True,
) -> int:
    """Serve until SIGTERM/SIGINT (or ``stop`` is set), then stop gracefully within the bound.

    Returns 0 when the server had started, else 1 (e.g. the port was busy). Tests running a
    server in-process pass their own ``stop`` and ``install_signals=False``.
    """
    stop = stop or asyncio.Event()
    signals: list[int] = []
    if install_signals:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, _on_signal, sig, signals, stop, server)
    task = asyncio.create_task(server.serve(), name="uvicorn")
    waiter = asyncio.create_task(stop.wait(), name="uvicorn-stop")
    try:
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        if not task.done():
            await _stop(server, task, on_stop, signals)
        else:
            await task
    finally:
        await cancel_and_wait(waiter)
        await cancel_and_wait(task)
    return 0 if server.started else 1


def _on_signal(sig: int, signals: list[int], stop: asyncio.Event, server: uvicorn.Server) -> None:
    signals.append(sig)
    if len(signals) > 1:
        log.warning("second signal %s: stopping now", signal.Signals(sig).name)
        server.force_exit = True
    stop.set()


async def _stop(
    server: uvicorn.Server,
    task: asyncio.Task[None],
    on_stop: StopCallback | None,
    signals: list[int],
) -> None:
    why = signal.Signals(signals[0]).name if signals else "stop requested"
    log.info("stopping (%s)", why, extra={"reason": why})
    if on_stop is not None:
        try:
            result = on_stop()
            if inspect.isawaitable(result):
                await result
        except Exception:
            log.exception("on_stop failed; stopping anyway")
    server.should_exit = True
    bound = server.config.timeout_graceful_shutdown or 0
    done, _ = await asyncio.wait({task}, timeout=bound + EXTRA_BOUND_S)
    if not done:
        log.warning("graceful stop exceeded %s s; forcing the exit", bound + EXTRA_BOUND_S)
        server.force_exit = True
        await asyncio.wait({task}, timeout=EXTRA_BOUND_S)


def run_uvicorn(
    app: Any,
    host: str,
    port: int,
    *,
    grace: float,
    on_stop: StopCallback | None = None,
    **config: Any,
) -> int:
    """Build and run a server for ``app`` in a new event loop (uvloop when installed) until
    SIGTERM/SIGINT; the process' exit status (0 after a clean stop, 1 if it never started)."""
    server = build_server(app, host, port, grace=grace, **config)
    with asyncio.Runner(loop_factory=server.config.get_loop_factory()) as runner:
        return runner.run(serve(server, on_stop=on_stop))
