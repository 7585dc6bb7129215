"""Edge subprocesses (`python -m compose.cli edge`) for kill and SIGTERM tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from compose.local_infra import free_port

ROOT = Path(__file__).resolve().parents[2]


class EdgeProcess:
    def __init__(self, nats_url: str, log_dir: Path, port: int | None = None, **env: str) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.nats_url = nats_url
        self.env = env
        self.log_path = log_dir / f"edge-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> EdgeProcess:
        env = dict(os.environ)
        env.update(
            NATS_URL=self.nats_url,
            EDGE_PORT=str(self.port),
            EDGE_ID=f"edge-{self.port}",
            EDGE_SHUTDOWN_GRACE_S="3",
            LOG_FORMAT="text",
            **self.env,
        )
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "compose.cli", "edge"],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while True:
            assert self.proc.poll() is None, f"edge exited: {self.log_path.read_text()[-2000:]}"
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            assert time.monotonic() < deadline, "edge did not come up"
            time.sleep(0.1)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def terminate(self, timeout: float = 20) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
