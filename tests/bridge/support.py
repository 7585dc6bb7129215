"""Helpers for the bridge tests: settings and a namespaced layout, in-process and subprocess
workers, stream reading (waiting, Kafka helpers and names come from ``tests.support``)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec
import nats
from nats.aio.msg import Msg
from nats.js.api import DeliverPolicy

from bridge.metrics import BridgeMetrics
from bridge.settings import BridgeSettings
from bridge.worker import BridgeWorker
from ofa_contract.layout import Layout
from ofa_contract.settings import CommonSettings, env_var
from tests.support.names import layout_for

REPO = Path(__file__).resolve().parents[2]


def bridge_settings(unique: str, **overrides: Any) -> BridgeSettings:
    """Settings with a test-unique consumer group and fast timings."""
    base: dict[str, Any] = {
        "consumer_group": f"bridge-{unique}",
        "metadata_refresh_ms": 500,
        "session_timeout_ms": 6000,
        "heartbeat_interval_ms": 500,
        "commit_interval_ms": 100,
        "heartbeat_s": 0.5,
        "ops_port": 0,
        "worker_id": f"w-{unique}",
        "retry_backoff_max_s": 1.0,
    }
    base.update(overrides)
    return msgspec.convert(base, BridgeSettings)


def bridge_layout(unique: str) -> Layout:
    """Every Kafka and NATS name of the test under its own namespace."""
    return layout_for(unique)


def env_for(settings: BridgeSettings, layout: Layout, kafka: str, nats_url: str) -> dict[str, str]:
    """Environment for a `ofa-serving bridge` subprocess with these settings and layout."""
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka,
        "NATS_URL": nats_url,
        "LOG_LEVEL": "INFO",
        "LOG_FORMAT": "json",
        "OFA_NAMESPACE": layout.namespace,
    }
    for f in msgspec.structs.fields(BridgeSettings):
        env[env_var(BridgeSettings, f.name)] = str(getattr(settings, f.name))
    return env


class InProcessWorker:
    """A worker running as a task in the test's event loop."""

    def __init__(self, kafka: str, nats_url: str, settings: BridgeSettings, layout: Layout) -> None:
        self.metrics = BridgeMetrics()
        self.worker = BridgeWorker(
            CommonSettings(kafka_bootstrap_servers=kafka, nats_url=nats_url),
            layout,
            settings,
            self.metrics,
        )
        self.stop = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> InProcessWorker:
        self.task = asyncio.create_task(self.worker.run(self.stop))
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop.set()
        if self.task is not None:
            await asyncio.wait_for(self.task, 60)

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float:
        """Current value of one sample (0 when absent)."""
        v = self.metrics.registry.get_sample_value(name, labels or {})
        return float(v) if v is not None else 0.0


class WorkerProcess:
    """`ofa-serving bridge` as a subprocess (killed on exit, also on failure)."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = env
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Launch the worker process."""
        logf = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "compose.cli", "bridge"],
            env=self.env,
            cwd=str(REPO),
            stdout=logf,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        logf.close()

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def terminate(self, timeout: float = 30) -> int | None:
        """SIGTERM and wait; SIGKILL after ``timeout``."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode

    def ops_port(self) -> int | None:
        """The ops port the worker logged at start-up (it picks a free one)."""
        if not self.log_path.exists():
            return None
        for line in self.log_path.read_text(errors="replace").splitlines():
            if '"ops_port"' in line:
                with contextlib.suppress(msgspec.DecodeError):
                    return int(msgspec.json.decode(line)["ops_port"])
        return None

    def log_tail(self, n: int = 40) -> str:
        """Last lines of the worker's log (for assertion messages)."""
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])


async def http_get(port: int, path: str) -> tuple[int, bytes]:
    """A minimal HTTP/1.1 GET against 127.0.0.1:port; (status, body)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


async def wait_for(
    cond: Callable[[], Awaitable[bool]], timeout: float, what: str, interval: float = 0.2
) -> None:
    """Poll ``cond`` until true; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await cond():
            return
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


async def read_stream(nats_url: str, stream: str, subjects: str) -> list[Msg]:
    """All messages stored in ``stream`` (ordered consumer from the first sequence)."""
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        info = await js.stream_info(stream)
        total = info.state.messages
        out: list[Msg] = []
        if total == 0:
            return out
        sub = await js.subscribe(subjects, ordered_consumer=True, deliver_policy=DeliverPolicy.ALL)
        try:
            while len(out) < total:
                out.append(await sub.next_msg(timeout=10))
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        return out
    finally:
        await nc.close()


async def stream_count(nats_url: str, stream: str) -> int:
    """Messages stored in ``stream`` (0 if it does not exist yet)."""
    nc = await nats.connect(nats_url)
    try:
        try:
            info = await nc.jetstream().stream_info(stream)
        except Exception:
            return 0
        return int(info.state.messages)
    finally:
        await nc.close()
