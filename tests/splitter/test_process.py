"""`ofa-serving split` as a process: a bad setting exits 2 naming the variable; with Kafka
unreachable it waits with back-off, says so once (then at growing intervals) naming the variable,
reports not-ready, and stops at once on SIGTERM with exit 0."""

from __future__ import annotations

from pathlib import Path

import httpx

from compose.local_infra import free_port
from tests.support.procs import ComponentProcess
from tests.support.wait import wait_until

UNREACHABLE = "127.0.0.1:1"


async def test_bad_setting_exits_2_naming_the_variable(tmp_path: Path) -> None:
    env = {"SPLIT_MAX_BATCH_RECORDS": "-5", "KAFKA_BOOTSTRAP_SERVERS": UNREACHABLE}
    proc = ComponentProcess(["split"], env, tmp_path, name="split-bad").start_nowait()
    try:
        assert await proc.wait_exit(60) == 2, proc.log_tail()
        assert "SPLIT_MAX_BATCH_RECORDS='-5'" in proc.log_text()
    finally:
        await proc.stop()


async def test_waits_for_kafka_reports_not_ready_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": UNREACHABLE,
        "SPLIT_OPS_PORT": str(port),
        "LOG_FORMAT": "text",
    }
    proc = ComponentProcess(
        ["split"], env, tmp_path, name="split-nokafka", ops_url=f"http://127.0.0.1:{port}"
    ).start_nowait()
    line = f"waiting for Kafka at {UNREACHABLE} (KAFKA_BOOTSTRAP_SERVERS)"
    try:
        await wait_until(lambda: line in proc.log_text(), timeout=60, what="the waiting line")
        async with httpx.AsyncClient(timeout=5) as client:
            ready = await client.get(f"{proc.ops_url}/ready")
        assert ready.status_code == 503
        assert "KAFKA_BOOTSTRAP_SERVERS" in ready.text
        assert await proc.terminate(timeout=10) == 0, proc.log_tail()
    finally:
        await proc.stop()
    log = proc.log_text()
    # Once, then at growing intervals (attempts 1, 2, 4, 8...): a few lines, not one per retry.
    assert 1 <= log.count(line) <= 4, log
    assert "Traceback" not in log and "Unclosed" not in log, log
