"""`ofa-serving router`: the public HTTP entry point (uvicorn + Litestar, port 5555), plus
OpenFactory's asset router alone on ``ROUTER_ASSET_ROUTER_PORT`` when set."""

from __future__ import annotations

import asyncio
import contextlib

import uvicorn

from ofa_contract.auth import AuthSettings
from ofa_contract.layout import Layout
from ofa_contract.runtime import cancel_and_wait, get_logger
from ofa_contract.runtime.serve import build_server, serve
from ofa_contract.settings import CommonSettings, from_env, settings_parser, with_listen_args
from router.app import create_app, create_asset_router_app
from router.service import RouterService
from router.settings import RouterSettings

log = get_logger("router", __name__)


def main(argv: list[str]) -> int:
    """Run the router until SIGTERM/SIGINT; open streams get ``ROUTER_SHUTDOWN_GRACE_S``."""
    parser = settings_parser(
        "ofa-serving router", RouterSettings, "Public HTTP router.", listen=True
    )
    settings = with_listen_args(from_env(RouterSettings), parser.parse_args(argv))
    service = RouterService(
        settings, from_env(CommonSettings), Layout.from_env(), from_env(AuthSettings)
    )
    servers = build_servers(service, settings.host, settings.port)
    with asyncio.Runner(loop_factory=servers[0].config.get_loop_factory()) as runner:
        return runner.run(serve_router(servers))


def build_servers(service: RouterService, host: str, port: int) -> list[uvicorn.Server]:
    """The main server (its lifespan runs ``service``) and, with ``ROUTER_ASSET_ROUTER_PORT``,
    the asset router's own listener."""
    s = service.settings
    servers = [build_server(create_app(service), host, port, grace=s.shutdown_grace_s)]
    if s.asset_router_port:
        app = create_asset_router_app(service)
        servers.append(build_server(app, host, s.asset_router_port, grace=1, lifespan="off"))
    return servers


async def _run_extra(server: uvicorn.Server, stop: asyncio.Event) -> None:
    """Serve a second listener until ``stop``; if it cannot listen, set ``stop`` for all."""

    async def run() -> None:
        # uvicorn reports a busy port with sys.exit(3); caught inside this coroutine it ends
        # this listener only (escaping a task, it would end the event loop at once).
        with contextlib.suppress(SystemExit):
            await server.serve()

    task = asyncio.create_task(run(), name=f"uvicorn-{server.config.port}")
    waiter = asyncio.create_task(stop.wait())
    await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    await cancel_and_wait(waiter)
    if not server.started:
        log.error(
            "cannot listen on ROUTER_ASSET_ROUTER_PORT=%s; stopping",
            server.config.port,
            extra={"port": server.config.port},
        )
        stop.set()
    server.should_exit = True
    await task


async def serve_router(servers: list[uvicorn.Server], *, stop: asyncio.Event | None = None) -> int:
    """Serve until SIGTERM/SIGINT (or ``stop``, set by tests) or until a listener fails, then
    stop gracefully (the shared runner's policy). 0 when every listener had started, else 1."""
    install_signals = stop is None
    stop = stop or asyncio.Event()
    extra = [asyncio.create_task(_run_extra(s, stop)) for s in servers[1:]]
    status = await serve(servers[0], stop=stop, install_signals=install_signals)
    stop.set()
    await asyncio.gather(*extra)
    return 1 if status or not all(s.started for s in servers) else 0
