"""The whole stack as separate processes for end-to-end tests, built on `ofa-serving dev`'s own
plan (same commands, same environment, every Kafka name namespaced), with kill -9 and restart of
any one component."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import msgspec

from compose import dev
from compose.local_infra import NatsProcess, free_port
from ofa_contract.layout import Layout
from ofa_contract.settings import CommonSettings

#: Faster failure detection than the defaults (10 s), so that a kill costs seconds, not tens of
#: seconds; 6 s is the broker's minimum session timeout.
FAST_FAILOVER = {
    "SPLIT_SESSION_TIMEOUT_MS": "6000",
    "SPLIT_HEARTBEAT_INTERVAL_MS": "1000",
    "BRIDGE_SESSION_TIMEOUT_MS": "6000",
    "BRIDGE_HEARTBEAT_INTERVAL_MS": "1000",
}


class Stack:
    """Splitter, bridge workers, edges and router (proxy mode) on real Kafka and NATS."""

    def __init__(
        self,
        kafka: str,
        nats: NatsProcess,
        unique: str,
        log_dir: Path,
        *,
        bridges: int = 2,
        edges: int = 2,
        input_partitions: int = 6,
        env: dict[str, str] | None = None,
        router_mode: str = "proxy",
    ) -> None:
        self.kafka = kafka
        self.nats = nats
        self.namespace = f"t_e2e_{unique}_"
        self.input_topic = f"t_e2e_in_{unique}"
        self.input_partitions = input_partitions
        self.log_dir = log_dir
        self.settings = dev.DevSettings(
            router_port=free_port(),
            router_mode=router_mode,
            edge_ports=[free_port() for _ in range(edges)],
            bridge_ops_ports=[free_port() for _ in range(bridges)],
            splitter_ops_port=free_port(),
            assets=0,  # the test drives the simulator itself
            namespace=self.namespace,
            log_dir=str(log_dir),
        )
        common = CommonSettings(
            kafka_bootstrap_servers=kafka, nats_url=nats.url, input_topic=self.input_topic
        )
        #: Every name namespaced, except the input topic (tests create and name it themselves).
        self.layout = msgspec.structs.replace(
            Layout().namespaced(self.namespace), input_topic=self.input_topic
        )
        self.children = dev.plan(self.settings, common, self.layout, unique, log_dir).children
        for c in self.children:
            c.env.update(FAST_FAILOVER)
            c.env["LOG_FORMAT"] = "text"
            c.env.update(env or {})
        self.by_name = {c.name: c for c in self.children}
        #: Restarts this harness performed (after its own kills), per component.
        self.restarts: dict[str, int] = dict.fromkeys(self.by_name, 0)

    @property
    def router_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.router_port}"

    @property
    def edge_urls(self) -> list[str]:
        return [f"http://127.0.0.1:{p}" for p in self.settings.edge_ports]

    @property
    def dlq_topic(self) -> str:
        return self.layout.dlq_topic

    @property
    def topic_prefix(self) -> str:
        return self.layout.group_topic_prefix

    def names(self) -> list[str]:
        return list(self.by_name)

    def pid(self, name: str) -> int:
        proc = self.by_name[name].proc
        assert proc is not None
        return proc.pid

    def pids(self) -> dict[str, int]:
        return {n: self.pid(n) for n in self.by_name}

    def dead(self) -> list[str]:
        """Components that exited without this harness killing them."""
        return [
            c.name for c in self.children if c.proc is not None and c.proc.returncode is not None
        ]

    async def start(self, timeout: float = 150.0) -> None:
        await dev.ensure_topic(self.kafka, self.input_topic, self.input_partitions)
        for c in self.children:
            await dev.start_child(c)
        await dev.wait_ready(self.children, timeout)

    async def kill(self, name: str) -> None:
        """kill -9 one component and reap it."""
        c = self.by_name[name]
        assert c.proc is not None and c.proc.returncode is None, f"{name} is not running"
        with contextlib.suppress(ProcessLookupError):
            c.proc.send_signal(signal.SIGKILL)
        await c.proc.wait()

    async def restart(self, name: str, timeout: float = 90.0) -> None:
        """Start a killed component again and wait until it answers /ready."""
        c = self.by_name[name]
        await dev.start_child(c)
        self.restarts[name] += 1
        await dev.wait_ready([c], timeout)

    async def restart_nats(self) -> None:
        """kill -9 nats-server and start it again on the same port and store."""
        self.nats.kill()
        self.nats.start()
        await self.nats.wait_ready()

    async def stop(self) -> list[str]:
        return await dev.stop_children(self.children, 15.0)

    def log_tail(self, name: str, lines: int = 40) -> str:
        path = self.by_name[name].log_path
        if not path.exists():
            return "(no log)"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    async def ready(self, name: str) -> bool:
        url = self.by_name[name].ready_url
        assert url is not None
        async with httpx.AsyncClient(timeout=3) as c:
            with contextlib.suppress(httpx.HTTPError):
                return (await c.get(url)).status_code == 200
        return False


@contextlib.asynccontextmanager
async def running_stack(
    kafka: str, nats: NatsProcess, unique: str, log_dir: Path, **kw: object
) -> AsyncIterator[Stack]:
    """A started stack, always stopped (and no child left) at the end."""
    stack = Stack(kafka, nats, unique, log_dir, **kw)  # type: ignore[arg-type]
    try:
        await stack.start()
        yield stack
    finally:
        await stack.stop()
        for c in stack.children:
            if c.proc is not None and c.proc.returncode is None:  # pragma: no cover
                os.kill(c.proc.pid, signal.SIGKILL)


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds (from /proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> int:
    """Resident set size of a process (from /proc/<pid>/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


async def wait_for(cond: object, timeout: float, what: str, interval: float = 0.2) -> None:
    """Poll an async ``cond()`` until it is true; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        if await cond():  # type: ignore[operator]
            return
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        await asyncio.sleep(interval)
