"""An edge as a subprocess (``ofa-serving edge``) for kill and signal tests."""

from __future__ import annotations

from pathlib import Path

from compose.local_infra import free_port
from tests.support.procs import ComponentProcess


class EdgeProcess(ComponentProcess):
    """``ofa-serving edge`` on a free port, logging text to ``log_dir``; ``env`` adds settings.

    ``await start()`` waits for ``/ready`` (which needs the stream); ``start(path="/health")``
    only for the process to listen."""

    def __init__(self, nats_url: str, log_dir: Path, port: int | None = None, **env: str) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        super().__init__(
            ["edge"],
            {
                "NATS_URL": nats_url,
                "EDGE_PORT": str(self.port),
                "EDGE_ID": f"edge-{self.port}",
                "EDGE_SHUTDOWN_GRACE_S": "3",
                "LOG_FORMAT": "text",
                **env,
            },
            log_dir,
            name=f"edge-{self.port}",
            ops_url=self.url,
        )
