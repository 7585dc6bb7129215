"""SIGTERM/SIGINT handling for asyncio processes."""

from __future__ import annotations

import asyncio
import contextlib
import signal


def install_stop_signals(stop: asyncio.Event) -> None:
    """Set ``stop`` on SIGTERM or SIGINT so the process can drain, commit and close."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
