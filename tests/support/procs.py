"""Components as subprocesses (``python -m compose.cli <command>``): start with an environment,
wait for ``/ready``, SIGTERM, SIGKILL, read the log."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

import httpx

from tests.support.wait import wait_until

REPO = Path(__file__).resolve().parents[2]


class ComponentProcess:
    """One ``ofa-serving`` process of a test; stdout and stderr go to ``log_path``.

    ``env`` is added to this process' environment (``inherit_env=False``: used alone).
    ``ops_url`` (e.g. ``http://127.0.0.1:<port>``) is where ``/ready`` and ``/health`` answer.
    Use as ``async with ComponentProcess(...) as p:`` to be sure it is stopped.
    """

    def __init__(
        self,
        command: list[str],
        env: Mapping[str, str],
        log_dir: Path,
        *,
        name: str | None = None,
        ops_url: str | None = None,
        inherit_env: bool = True,
    ) -> None:
        self.command = command
        self.name = name or command[0]
        self.env = {**(os.environ if inherit_env else {}), **env}
        self.log_path = log_dir / f"{self.name}.log"
        self.ops_url = ops_url
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        """The process id (the process must have been started)."""
        assert self.proc is not None, f"{self.name} not started"
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        """Exit status, or None while it runs."""
        return None if self.proc is None else self.proc.poll()

    def start_nowait(self) -> ComponentProcess:
        """Start the process and return at once."""
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "compose.cli", *self.command],
                cwd=REPO,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    async def start(
        self, *, ready: bool = True, timeout: float = 60.0, path: str = "/ready"
    ) -> ComponentProcess:
        """Start the process and, with ``ready`` and an ``ops_url``, wait until ``path``
        answers 200 (``/health`` for "up" when ``/ready`` needs more, e.g. a bridge's stream).
        A process that does not get there is stopped before the failure is raised."""
        self.start_nowait()
        if ready and self.ops_url is not None:
            try:
                await self.wait_ready(timeout, path)
            except BaseException:
                await self.stop()
                raise
        return self

    async def status(self, path: str = "/ready") -> int | None:
        """HTTP status of ``GET <ops_url><path>``, None when nothing answers."""
        assert self.ops_url is not None, f"{self.name} has no ops_url"
        try:
            async with httpx.AsyncClient(timeout=2.0) as client:
                return (await client.get(self.ops_url + path)).status_code
        except httpx.HTTPError:
            return None

    async def wait_ready(self, timeout: float = 60.0, path: str = "/ready") -> None:
        """Wait until ``path`` answers 200; fail with the log tail if the process exits."""

        async def ready() -> bool:
            if self.returncode is not None:
                raise AssertionError(
                    f"{self.name} exited with {self.returncode}:\n{self.log_tail()}"
                )
            return await self.status(path) == 200

        await wait_until(ready, timeout=timeout, what=f"{self.name} {path} == 200")

    async def wait_exit(self, timeout: float = 30.0) -> int:
        """Wait until the process ends; its exit status (AssertionError after ``timeout``)."""
        assert self.proc is not None, f"{self.name} not started"
        deadline = time.monotonic() + timeout
        proc = self.proc
        try:
            return await asyncio.to_thread(proc.wait, max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"{self.name} still running {timeout}s later:\n{self.log_tail()}"
            ) from None

    def send_signal(self, sig: int) -> None:
        """Send ``sig`` if the process still runs."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)

    async def terminate(self, timeout: float = 20.0) -> int:
        """SIGTERM, then the exit status (AssertionError if it does not stop in time)."""
        self.send_signal(signal.SIGTERM)
        return await self.wait_exit(timeout)

    def kill(self) -> None:
        """SIGKILL and reap (a crash, for the tests that need one)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    async def stop(self, timeout: float = 20.0) -> None:
        """Stop it whatever state it is in: SIGTERM, then SIGKILL after ``timeout``."""
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            await self.terminate(timeout)
        except AssertionError:
            self.kill()

    def log_text(self) -> str:
        """Everything the process wrote so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, chars: int = 3000) -> str:
        """The last ``chars`` characters of the log, for assertion messages."""
        return self.log_text()[-chars:]

    async def __aenter__(self) -> ComponentProcess:
        if self.proc is None:
            await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
