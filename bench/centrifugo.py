"""Centrifugo v6.9.1 for the side-by-side benchmark: build, configure, run, publish.

The binary is built from the Go module proxy into ``<OFA_CACHE_DIR>/bin`` (outside the
repository, never committed) when Go is present:

    GOBIN=~/.cache/ofa-serving/bin go install github.com/centrifugal/centrifugo/v6@v6.9.1

Configuration (Centrifugo v6 keys, checked with ``centrifugo checkconfig``): unidirectional SSE
on, history on for every channel, the HTTP publish API with a key, connection JWTs (HS256) whose
``channels`` claim subscribes the stream server-side (what a uni_sse client does).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path
from urllib.parse import quote

import jwt

from compose.local_infra import default_cache_dir

VERSION = "v6.9.1"
MODULE = f"github.com/centrifugal/centrifugo/v6@{VERSION}"
API_KEY = "bench-api-key"
HMAC_SECRET = "bench-hmac-secret-bench-hmac-secret"


class CentrifugoMissing(RuntimeError):
    """Centrifugo cannot be found nor built (no Go toolchain)."""


def binary_path() -> Path:
    """Where the built binary is cached (outside the repository)."""
    return default_cache_dir() / "bin" / "centrifugo"


def _version_ok(path: Path) -> bool:
    """A ``go install``-ed binary reports version 0.0.0; its module version is in the build
    info (``go version -m``). Without Go, trust what is there."""
    go = shutil.which("go")
    if go is None:
        return os.access(path, os.X_OK)
    out = subprocess.run(
        [go, "version", "-m", str(path)], capture_output=True, text=True, timeout=60, check=False
    ).stdout
    return any(
        line.split()[1:3] == ["github.com/centrifugal/centrifugo/v6", VERSION]
        for line in out.splitlines()
        if line.strip().startswith("mod")
    )


def ensure_binary() -> Path:
    """The cached Centrifugo binary, built with ``go install`` when missing (takes minutes)."""
    path = binary_path()
    if path.exists() and _version_ok(path):
        return path
    go = shutil.which("go")
    if go is None:
        raise CentrifugoMissing(
            f"Centrifugo {VERSION} is not at {path} and Go is not installed, so it cannot be "
            f"built. Install Go (https://go.dev/dl/) or put a centrifugo {VERSION} binary there; "
            "the edge-only parts of the benchmark still run with --no-centrifugo."
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    print(f"building Centrifugo {VERSION} with {go} into {path.parent} (takes minutes)...")
    env = dict(os.environ, GOBIN=str(path.parent))
    subprocess.run([go, "install", MODULE], env=env, check=True)
    if not _version_ok(path):
        raise CentrifugoMissing(f"go install did not produce a working {path}")
    return path


def config(port: int) -> dict[str, object]:
    """Centrifugo v6 configuration for the benchmark."""
    return {
        "http_server": {"address": "127.0.0.1", "port": port},
        "log": {"level": "error"},
        "client": {
            "token": {"hmac_secret_key": HMAC_SECRET},
            "allowed_origins": ["*"],
        },
        "http_api": {"key": API_KEY},
        "uni_sse": {"enabled": True},
        "health": {"enabled": True},
        "channel": {"without_namespace": {"history_size": 1000, "history_ttl": "300s"}},
    }


class Centrifugo:
    """One Centrifugo process on a private port."""

    def __init__(self, binary: Path, port: int, work: Path) -> None:
        self.binary = binary
        self.port = port
        self.work = work
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Base URL."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Centrifugo:
        """Write the config, check it, start, wait for /health."""
        conf = self.work / f"centrifugo-{self.port}.json"
        conf.write_text(json.dumps(config(self.port), indent=2))
        subprocess.run([str(self.binary), "checkconfig", "--config", str(conf)], check=True)
        log = open(self.work / f"centrifugo-{self.port}.log", "ab")  # noqa: SIM115 - the child's
        self.proc = subprocess.Popen(
            [str(self.binary), "--config", str(conf)],
            cwd=self.work,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=1):
                    return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"centrifugo did not answer /health; see its log in {self.work}")

    def stop(self) -> None:
        """SIGTERM, then kill if it lingers."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def stream_url(self, channel: str) -> str:
        """uni_sse URL of a client subscribed (server-side, by its token) to ``channel``."""
        token = jwt.encode({"sub": "bench", "channels": [channel]}, HMAC_SECRET, "HS256")
        connect = json.dumps({"token": token}, separators=(",", ":"))
        return f"{self.url}/connection/uni_sse?cf_connect={quote(connect)}"


class ApiPublisher:
    """Publishes over Centrifugo's HTTP API, one request per event, pipelined on ``conns``
    keep-alive connections (Go's server answers pipelined requests in order): the publisher
    never waits for a round trip, as nats-py's buffered publish does not for the edge."""

    def __init__(self, port: int, conns: int = 4) -> None:
        self.port = port
        self.n = conns
        self.writers: list[asyncio.StreamWriter] = []
        self.tasks: list[asyncio.Task[None]] = []
        self.sent = 0
        self.answered = 0
        self.errors = 0
        self._head = b"POST /api/publish HTTP/1.1\r\nHost: x\r\nX-API-Key: %s\r\n" % (
            API_KEY.encode()
        )

    async def start(self) -> None:
        """Open the connections and their response readers."""
        for _ in range(self.n):
            r, w = await asyncio.open_connection("127.0.0.1", self.port, limit=1 << 22)
            self.writers.append(w)
            self.tasks.append(asyncio.create_task(self._read(r)))

    def publish(self, channel: str, data: bytes) -> None:
        """Send one publication (``data`` is JSON) without waiting for the answer."""
        body = b'{"channel":"%s","data":%s}' % (channel.encode(), data)
        self.writers[self.sent % self.n].write(
            self._head + b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        self.sent += 1

    async def _read(self, r: asyncio.StreamReader) -> None:
        while True:
            head = await r.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            body = await r.readexactly(length)
            if not head.startswith(b"HTTP/1.1 200") or b'"error"' in body:
                self.errors += 1
            self.answered += 1

    async def flush(self) -> None:
        """Wait until every publication was answered (30 s at most)."""
        for w in self.writers:
            await w.drain()
        deadline = time.monotonic() + 30
        while self.answered < self.sent and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.01)

    async def close(self) -> None:
        """Stop the readers, close the connections."""
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for w in self.writers:
            w.close()
