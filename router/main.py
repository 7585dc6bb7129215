"""`ofa-serving router`: the public HTTP entry point (uvicorn + Litestar, port 5555), plus
OpenFactory's asset router alone on ``ROUTER_ASSET_ROUTER_PORT`` when set."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
from typing import Any, Literal

import uvicorn

from ofa_contract.runtime import install_stop_signals
from ofa_contract.settings import CommonSettings, describe, from_env
from router.app import create_app, create_asset_router_app
from router.service import RouterService
from router.settings import PREFIX, RouterSettings

log = logging.getLogger(__name__)


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
    port = args.port if args.port is not None else settings.port
    return asyncio.run(serve_router(service, args.host or settings.host, port))


def _server(
    app: Any, host: str, port: int, grace: float, lifespan: Literal["on", "off"]
) -> uvicorn.Server:
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=host,
            port=port,
            log_config=None,  # keep the process' JSON logging
            access_log=False,
            lifespan=lifespan,
            timeout_graceful_shutdown=max(1, round(grace)),
        )
    )
    # uvicorn's own handlers re-raise the signal after shutdown (exit status -15); ours let the
    # process drain and exit 0 like every other component.
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
    return server


def build_servers(service: RouterService, host: str, port: int) -> list[uvicorn.Server]:
    """The main server (its lifespan runs ``service``) and, with ``ROUTER_ASSET_ROUTER_PORT``,
    the asset router's own listener."""
    s = service.settings
    servers = [_server(create_app(service), host, port, s.shutdown_grace_s, "on")]
    if s.asset_router_port:
        app = create_asset_router_app(service)
        servers.append(_server(app, host, s.asset_router_port, 1.0, "off"))
    return servers


async def _run(server: uvicorn.Server) -> None:
    # uvicorn reports a busy port with sys.exit(3); caught here, inside the coroutine, it ends
    # this server only, and serve_router stops the other one cleanly.
    with contextlib.suppress(SystemExit):
        await server.serve()


async def serve_router(
    service: RouterService,
    host: str,
    port: int,
    *,
    stop: asyncio.Event | None = None,
    servers: list[uvicorn.Server] | None = None,
) -> int:
    """Serve until SIGTERM/SIGINT (or ``stop``, for tests) or until a listener ends, then shut
    down gracefully (stop accepting, give open streams the grace period, run the lifespan
    shutdown that closes our connections). 0 when every listener had started, else 1."""
    if stop is None:
        stop = asyncio.Event()
        install_stop_signals(stop)
    servers = servers or build_servers(service, host, port)
    tasks = [asyncio.create_task(_run(s), name=f"uvicorn-{s.config.port}") for s in servers]
    waiter = asyncio.create_task(stop.wait())
    await asyncio.wait({*tasks, waiter}, return_when=asyncio.FIRST_COMPLETED)
    for s in servers:
        s.should_exit = True
    waiter.cancel()
    await asyncio.gather(*tasks)
    failed = [s.config.port for s in servers if not s.started]
    if failed:
        log.error("router stopped: could not listen on port(s) %s", failed)
    return 1 if failed else 0
