"""Cold and warm start time of the local infrastructure (`ofa-serving infra up`).

    .venv/bin/python bench/infra_bench.py [--runs 3] [--no-cold]

Cold: empty jar cache AND an empty Maven repository (everything downloaded from Maven Central).
Warm: jars cached, fresh data directories (storage format included). Each run is stopped with
`infra down` afterwards. Prints the cold time and the median of the warm runs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import print_table
from compose.local_infra import free_port


def timed_up(env: dict[str, str]) -> float:
    cli = [sys.executable, "-m", "compose.cli", "infra"]
    t0 = time.perf_counter()
    up = subprocess.run([*cli, "up"], env=env, capture_output=True, text=True, check=False)
    if up.returncode != 0:
        raise SystemExit(f"infra up failed:\n{up.stderr}")
    took = time.perf_counter() - t0
    subprocess.run([*cli, "down"], env=env, check=True, capture_output=True)
    return took


def env_for(work: str, cache: str | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        OFA_WORK_DIR=work,
        OFA_KAFKA_PORT=str(free_port()),
        OFA_KAFKA_CONTROLLER_PORT=str(free_port()),
        OFA_NATS_PORT=str(free_port()),
        OFA_NATS_MONITOR_PORT=str(free_port()),
    )
    if cache:
        env["OFA_CACHE_DIR"] = cache
    return env


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--no-cold", action="store_true")
    args = p.parse_args()
    rows = []
    if not args.no_cold:
        with tempfile.TemporaryDirectory() as cache, tempfile.TemporaryDirectory() as work:
            env = env_for(work, cache)
            env["MAVEN_OPTS"] = f"-Dmaven.repo.local={cache}/m2"
            cold = timed_up(env)
        rows.append(["cold (download + format + start)", f"{cold:.1f} s", "1 run"])
    warm = []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory() as work:
            warm.append(timed_up(env_for(work)))
    rows.append(
        [
            "warm (cached jars, new data dir)",
            f"{statistics.median(warm):.1f} s",
            " ".join(f"{x:.1f}" for x in warm),
        ]
    )
    print_table(
        "ofa-serving infra up: time until Kafka and NATS answer", ["start", "median", "runs"], rows
    )


if __name__ == "__main__":
    main()
