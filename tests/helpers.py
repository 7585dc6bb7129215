"""Small helpers shared by the integration tests (real servers only).

The Kafka helpers and the samples moved to :mod:`tests.support`; they are re-exported here
until every test imports them from there.
"""

from __future__ import annotations

from pathlib import Path

import msgspec

from tests.support.kafka import consume_all, create_topics, produce
from tests.support.samples import SAMPLES, load_samples, sample_record

__all__ = [
    "CHROMIUM_ARGS",
    "SAMPLES",
    "Endpoints",
    "consume_all",
    "create_topics",
    "load_samples",
    "produce",
    "sample_record",
]

#: Debian's chromium, headless, as root, on a machine with no network but loopback: without the
#: background-networking flags it keeps trying (and failing) to reach Google's hosts.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


class Endpoints(msgspec.Struct):
    """Addresses of the real servers a test talks to."""

    kafka: str
    nats: str
    work_dir: Path | None = None
