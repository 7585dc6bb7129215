"""`ofa-serving router`: the public HTTP entry point (uvicorn + Litestar, port 5555)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib

import uvicorn

from ofa_contract.runtime import install_stop_signals
from ofa_contract.settings import CommonSettings, describe, from_env
from router.app import create_app
from router.service import RouterService
from router.settings import PREFIX, RouterSettings


def main(argv: list[str]) -> int:
    """Run the router until SIGTERM/SIGINT; open streams get ``ROUTER_SHUTDOWN_GRACE_S``."""
    parser = argparse.ArgumentParser(
        prog="ofa-serving router",
        description="Public HTTP router. Settings come from the environment:\n"
        + "\n".join(f"  {n} (default {d})" for n, d, _ in describe(RouterSettings, PREFIX)),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", help="overrides ROUTER_HOST")
    parser.add_argument("--port", type=int, help="overrides ROUTER_PORT")
    args = parser.parse_args(argv)
    settings = from_env(RouterSettings, PREFIX)
    common = from_env(CommonSettings)
    service = RouterService(settings, common)
    config = uvicorn.Config(
        create_app(service),
        host=args.host or settings.host,
        port=args.port if args.port is not None else settings.port,
        log_config=None,  # keep the process' JSON logging
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=max(1, round(settings.shutdown_grace_s)),
    )
    server = uvicorn.Server(config)
    # uvicorn's own handlers re-raise the signal after shutdown (exit status -15); ours let the
    # process drain and exit 0 like every other component.
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
    return asyncio.run(_serve(server))


async def _serve(server: uvicorn.Server) -> int:
    """Serve until SIGTERM/SIGINT, then shut down gracefully (stop accepting, give open
    streams the grace period, run the lifespan shutdown that closes our connections)."""
    stop = asyncio.Event()
    install_stop_signals(stop)
    task = asyncio.create_task(server.serve())
    waiter = asyncio.create_task(stop.wait())
    await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    server.should_exit = True
    waiter.cancel()
    await task
    return 0 if server.started else 1
