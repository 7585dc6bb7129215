"""The shared process runtime: waiting for services, task helpers, ops answers, the rebalance
listener guard, the NATS connection policy and the uvicorn runner's signal policy."""

from __future__ import annotations

import asyncio
import logging
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import msgspec
import pytest
from aiokafka import TopicPartition
from prometheus_client import CollectorRegistry, Counter

from compose import local_infra
from compose.local_infra import free_port
from ofa_contract.runtime import (
    BackgroundTasks,
    Backoff,
    OpsServer,
    cancel_and_wait,
    get_logger,
    logger_name,
    metric_name,
    ops_answer,
    wait_for_service,
)
from ofa_contract.runtime.connect import ReconnectPolicy, connect_nats
from ofa_contract.runtime.rebalance import GuardedRebalanceListener
from ofa_contract.runtime.serve import build_server, serve
from ofa_contract.settings import SettingsError
from tests.support.wait import wait_until

REPO = Path(__file__).resolve().parents[2]
FAST = Backoff(first=0.01, factor=2.0, cap=0.05)
log = logging.getLogger("ofa_serving.test.runtime")


# -- wait_for_service --------------------------------------------------------------------------


async def test_wait_for_service_logs_the_variable_then_only_at_growing_intervals(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls = 0
    reasons: list[str] = []

    async def probe() -> str:
        nonlocal calls
        calls += 1
        if calls < 10:
            raise ConnectionError("refused")
        return "conn"

    with caplog.at_level(logging.INFO, logger=log.name):
        got = await wait_for_service(
            "Kafka at 127.0.0.1:1",
            "KAFKA_BOOTSTRAP_SERVERS",
            probe,
            asyncio.Event(),
            log,
            backoff=FAST,
            on_waiting=reasons.append,
        )
    assert got == "conn" and calls == 10
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings[0] == (
        "waiting for Kafka at 127.0.0.1:1 (KAFKA_BOOTSTRAP_SERVERS): ConnectionError: refused"
    )
    assert len(warnings) == 4  # attempts 1, 2, 4, 8 of 9 failures
    assert len(reasons) == 9 and "KAFKA_BOOTSTRAP_SERVERS" in reasons[0]
    assert any("reachable" in r.getMessage() for r in caplog.records)


async def test_wait_for_service_returns_promptly_on_stop_even_inside_a_hanging_probe() -> None:
    stop = asyncio.Event()
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def probe() -> None:
        started.set()
        try:
            await asyncio.Event().wait()  # a connect that never answers
        finally:
            cancelled.set()

    task = asyncio.create_task(wait_for_service("NATS", "NATS_URL", probe, stop, log))
    await started.wait()
    stop.set()
    assert await asyncio.wait_for(task, 5) is None
    assert cancelled.is_set()


async def test_wait_for_service_lets_configuration_errors_through() -> None:
    async def probe() -> None:
        raise SettingsError("bad value for X")

    with pytest.raises(SettingsError):
        await wait_for_service("Kafka", "X", probe, asyncio.Event(), log, fatal=(SettingsError,))


def test_backoff_is_capped() -> None:
    b = Backoff(first=0.5, factor=2, cap=3)
    assert [b.delay(n) for n in (1, 2, 3, 4, 10)] == [0.5, 1.0, 2.0, 3, 3]


# -- tasks -------------------------------------------------------------------------------------


async def test_cancel_and_wait_stops_a_task_and_tolerates_none() -> None:
    finished = asyncio.Event()

    async def forever() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            finished.set()

    task = asyncio.create_task(forever())
    await asyncio.sleep(0)
    await cancel_and_wait(task)
    assert task.cancelled() and finished.is_set()
    await cancel_and_wait(None)


async def test_background_tasks_keep_references_log_failures_and_close(
    caplog: pytest.LogCaptureFixture,
) -> None:
    tasks = BackgroundTasks("test", log)
    gate = asyncio.Event()

    async def fail() -> None:
        raise RuntimeError("boom")

    failing = tasks.spawn(fail(), name="failing")
    waiting = tasks.spawn(gate.wait(), name="waiting")
    with caplog.at_level(logging.ERROR, logger=log.name):
        await asyncio.wait({failing})
        await asyncio.sleep(0)  # the done callback runs on the next loop turn
    assert len(tasks) == 1
    assert any("failing" in r.getMessage() and "boom" in r.getMessage() for r in caplog.records)
    await tasks.close(timeout=5)
    assert waiting.cancelled() and len(tasks) == 0


# -- naming rules ------------------------------------------------------------------------------


def test_logger_and_metric_naming() -> None:
    assert logger_name("edge", "edge.fanout") == "ofa_serving.edge.fanout"
    assert logger_name("bridge") == "ofa_serving.bridge"
    assert logger_name("edge", "edge") == "ofa_serving.edge"
    assert get_logger("router", "router.service").name == "ofa_serving.router.service"
    assert metric_name("edge", "connections") == "ofa_edge_connections"


# -- ops ---------------------------------------------------------------------------------------


async def _not_ready() -> dict[str, str]:
    return {"nats": "waiting for NATS (NATS_URL)"}


async def _ready() -> dict[str, str]:
    return {}


async def _broken() -> dict[str, str]:
    raise RuntimeError("check failed")


async def test_ops_answer_for_every_path() -> None:
    reg = CollectorRegistry()
    Counter("ofa_test_things", "things", registry=reg).inc()
    ready = await ops_answer("/ready", _ready, reg)
    assert (ready.status, ready.body) == (200, b'{"status":"ready"}')
    not_ready = await ops_answer("/ready", _not_ready, reg)
    assert not_ready.status == 503
    assert msgspec.json.decode(not_ready.body)["issues"] == {"nats": "waiting for NATS (NATS_URL)"}
    broken = await ops_answer("/ready", _broken, reg)
    assert broken.status == 503 and b"check failed" in broken.body
    assert (await ops_answer("/health", _not_ready, reg)).status == 200
    assert b"ofa_test_things_total 1.0" in (await ops_answer("/metrics", _ready, reg)).body
    assert (await ops_answer("/info", _ready, reg, {"id": "x"})).body == b'{"id":"x"}'
    missing = await ops_answer("/nope", _ready, reg)
    assert missing.status == 404 and b"detail" in missing.body


async def test_ops_server_serves_the_shared_answers() -> None:
    server = OpsServer("127.0.0.1", 0, _not_ready, CollectorRegistry(), {"id": "s1"})
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
            r = await client.get("/ready")
            assert r.status_code == 503 and r.json()["status"] == "not ready"
            assert (await client.get("/info")).json() == {"id": "s1"}
            assert (await client.get("/x")).status_code == 404
    finally:
        await server.stop()


# -- rebalance listener ------------------------------------------------------------------------


async def test_guarded_listener_reports_callback_failures() -> None:
    errors: list[tuple[str, str]] = []
    seen: list[set[TopicPartition]] = []

    async def assigned(parts: set[TopicPartition]) -> None:
        seen.append(parts)

    def revoked(parts: set[TopicPartition]) -> None:
        raise RuntimeError("revoke failed")

    listener = GuardedRebalanceListener(
        assigned, revoked, lambda exc, phase: errors.append((phase, str(exc)))
    )
    tp = TopicPartition("t", 0)
    await listener.on_partitions_assigned({tp})
    await listener.on_partitions_revoked({tp})
    assert seen == [{tp}]
    assert errors == [("revoked", "revoke failed")]


async def test_wait_for_service_names_the_exception_type_once() -> None:
    from aiokafka.errors import KafkaConnectionError

    reasons: list[str] = []
    stop = asyncio.Event()
    errors = iter([KafkaConnectionError("Unable to bootstrap"), ConnectionError("refused")])

    async def probe() -> str:
        exc = next(errors, None)
        if exc is not None:
            raise exc
        return "ok"

    got = await wait_for_service(
        "Kafka",
        "KAFKA_BOOTSTRAP_SERVERS",
        probe,
        stop,
        log,
        backoff=FAST,
        on_waiting=reasons.append,
    )
    assert got == "ok"
    assert reasons[0].endswith(
        "(KAFKA_BOOTSTRAP_SERVERS): KafkaConnectionError: Unable to bootstrap"
    )
    assert reasons[1].endswith("(KAFKA_BOOTSTRAP_SERVERS): ConnectionError: refused")


# -- NATS --------------------------------------------------------------------------------------


async def test_connect_nats_reconnects_forever_and_logs_outage_once(
    nats_private: local_infra.NatsProcess, caplog: pytest.LogCaptureFixture
) -> None:
    reconnected = asyncio.Event()

    async def on_reconnect() -> None:
        reconnected.set()

    policy = ReconnectPolicy(reconnect_time_wait=0.1)
    with caplog.at_level(logging.WARNING, logger=log.name):
        nc = await connect_nats(
            nats_private.url, "test-conn", policy=policy, log=log, reconnected_cb=on_reconnect
        )
        try:
            assert nc.options["max_reconnect_attempts"] == -1
            nats_private.stop()
            await wait_until(lambda: not nc.is_connected, timeout=30, what="disconnect")
            await asyncio.sleep(1.0)  # ~10 failed reconnect attempts while the server is down
            nats_private.start()
            await asyncio.wait_for(reconnected.wait(), 60)
            assert nc.is_connected
        finally:
            await nc.close()
    lost = [r for r in caplog.records if "lost" in r.getMessage()]
    back = [r for r in caplog.records if "re-established" in r.getMessage()]
    errors = [r for r in caplog.records if r.getMessage().startswith("NATS connection test-conn:")]
    assert len(lost) == 1 and len(back) == 1
    assert len(errors) <= 1  # later failed attempts are DEBUG


@pytest.mark.parametrize("policy", [ReconnectPolicy.FOREVER, ReconnectPolicy.NONE])
async def test_connect_nats_first_connect_fails_fast_whatever_the_policy(
    policy: ReconnectPolicy,
) -> None:
    # nats.py alone retries this forever under both policies; the bound is only a safety net.
    url = f"nats://127.0.0.1:{free_port()}"
    with pytest.raises(Exception) as raised:
        await asyncio.wait_for(connect_nats(url, "test-unreachable", policy=policy), 60)
    assert not isinstance(raised.value, TimeoutError)


async def test_connect_nats_skips_an_unreachable_server_then_applies_the_policy(
    nats_private: local_infra.NatsProcess,
) -> None:
    dead = f"nats://127.0.0.1:{free_port()}"
    policy = ReconnectPolicy(reconnect_time_wait=0.3)
    nc = await connect_nats([dead, nats_private.url], "test-pool", policy=policy)
    try:
        assert nc.is_connected
        assert nc.options["allow_reconnect"] is True
        assert nc.options["max_reconnect_attempts"] == -1
        assert nc.options["reconnect_time_wait"] == 0.3
    finally:
        await nc.close()


async def test_connect_nats_none_policy_closes_on_the_first_disconnect(
    nats_private: local_infra.NatsProcess,
) -> None:
    closed = asyncio.Event()

    async def on_closed() -> None:
        closed.set()

    nc = await connect_nats(
        nats_private.url, "test-none", policy=ReconnectPolicy.NONE, closed_cb=on_closed
    )
    try:
        assert nc.options["allow_reconnect"] is False
        nats_private.stop()
        await asyncio.wait_for(closed.wait(), 30)
        assert nc.is_closed
    finally:
        await nc.close()


async def test_wait_for_service_around_connect_nats_logs_once_then_connects(
    nats_private: local_infra.NatsProcess, caplog: pytest.LogCaptureFixture
) -> None:
    nats_private.stop()
    stop = asyncio.Event()
    with caplog.at_level(logging.WARNING, logger=log.name):
        waiting = asyncio.ensure_future(
            wait_for_service(
                "NATS",
                "NATS_URL",
                lambda: connect_nats(nats_private.url, "test-wait"),
                stop,
                log,
                backoff=FAST,
            )
        )
        await wait_until(
            lambda: any("waiting for NATS (NATS_URL)" in r.getMessage() for r in caplog.records),
            timeout=60,
            what="the waiting log line",
        )
        nats_private.start()
        nc = await asyncio.wait_for(waiting, 60)
    assert nc is not None and nc.is_connected
    await nc.close()
    assert nc.options["max_reconnect_attempts"] == -1


def test_default_policy_never_gives_up() -> None:
    assert ReconnectPolicy.FOREVER.max_reconnect_attempts == -1
    assert ReconnectPolicy.NONE.options()["allow_reconnect"] is False


# -- uvicorn runner ----------------------------------------------------------------------------


async def test_serve_stops_gracefully_and_calls_on_stop() -> None:
    from litestar import Litestar

    from ofa_contract.runtime import ops_routes

    app = Litestar(route_handlers=[ops_routes(_ready, CollectorRegistry(), {"id": "r"})])
    port = free_port()
    server = build_server(app, "127.0.0.1", port, grace=1)
    stop = asyncio.Event()
    stopped: list[bool] = []
    task = asyncio.create_task(
        serve(server, on_stop=lambda: stopped.append(True), stop=stop, install_signals=False)
    )
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:

        async def up() -> bool:
            try:
                return (await client.get("/ready")).status_code == 200
            except httpx.HTTPError:
                return False

        await wait_until(up, timeout=30, what="server up")
        assert (await client.get("/info")).json() == {"id": "r"}
        assert (await client.get("/health")).json() == {"status": "ok"}
    stop.set()
    assert await asyncio.wait_for(task, 30) == 0
    assert stopped == [True]


_SERVER = textwrap.dedent(
    """
    import sys
    from litestar import Litestar
    from ofa_contract.runtime import ops_routes
    from ofa_contract.runtime.serve import run_uvicorn

    async def ready():
        return {}

    app = Litestar(route_handlers=[ops_routes(ready)])
    sys.exit(run_uvicorn(app, "127.0.0.1", int(sys.argv[1]), grace=1,
                         on_stop=lambda: print("on_stop", flush=True)))
    """
)


def _spawn_server(port: int, out: Path) -> subprocess.Popen[bytes]:
    with out.open("wb") as fh:
        return subprocess.Popen(
            [sys.executable, "-c", _SERVER, str(port)], cwd=REPO, stdout=fh, stderr=fh
        )


async def test_run_uvicorn_exits_0_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    out = tmp_path / "server.log"
    proc = _spawn_server(port, out)
    try:
        async with httpx.AsyncClient() as client:

            async def up() -> bool:
                assert proc.poll() is None, out.read_text()
                try:
                    r = await client.get(f"http://127.0.0.1:{port}/ready")
                except httpx.HTTPError:
                    return False
                return r.status_code == 200

            await wait_until(up, timeout=60, what="run_uvicorn server up")
        proc.send_signal(signal.SIGTERM)
        rc = await asyncio.to_thread(proc.wait, 30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert rc == 0, out.read_text()
    assert "on_stop" in out.read_text()
