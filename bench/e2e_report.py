"""What the end-to-end benchmark prints: the machine, per row the medians and spread of the runs
and their ratios to the Kafka-only anchor, a verdict per goal (issue 12, goal 1), the per-hop
budget and the CPU tables."""

from __future__ import annotations

import datetime
import os
import shlex
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import msgspec

from bench.common import median, percentile, print_table
from bench.e2e_clients import expected_deliveries
from bench.e2e_probe import budget_rows

#: Goal per client count: (max p50 ratio, max p99 ratio) to the Kafka-only anchor; None = free.
GOALS: dict[int, tuple[float | None, float | None]] = {100: (3.0, 2.0), 1000: (None, 3.0)}


class RowResult(msgspec.Struct, kw_only=True):
    """One measured phase of one run: ``clients`` SSE clients at the row's rate."""

    clients: int
    assets: int
    sent: int
    elapsed_s: float
    #: Latencies (ms) per hop; "input topic" is the Kafka-only anchor, "client" the load clients.
    hops: dict[str, list[float]]
    #: CPU-seconds per component over the phase.
    cpu: dict[str, float]

    @property
    def expected(self) -> int:
        """Deliveries the clients should see: each asset's events times its clients."""
        return expected_deliveries(self.sent, self.clients, self.assets)

    def p(self, hop: str, q: float) -> float:
        return percentile(self.hops.get(hop, []), q)


def _memory() -> str:
    kb = _read("/proc/meminfo", "MemTotal").split()[0]
    return f"{int(kb) / 2**20:.1f} GiB" if kb.isdigit() else "?"


def _read(path: str, key: str) -> str:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(key):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "?"


def machine_lines(argv: Sequence[str]) -> list[str]:
    """Date, machine, commit and the exact command, so a table can be regenerated."""
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    kafka = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    return [
        f"date:    {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M:%S} UTC",
        f"machine: nproc {os.cpu_count()} (usable {len(os.sched_getaffinity(0))}), "
        f"{_read('/proc/cpuinfo', 'model name')}, memory {_memory()}, "
        f"load average at start {load}",
        f"code:    commit {commit or '?'}, Python {sys.version.split()[0]}",
        "kafka:   " + (f"{kafka} (KAFKA_BOOTSTRAP_SERVERS)" if kafka else "private, fresh per run"),
        "command: " + shlex.join(["python", "-m", "bench.e2e_bench", *argv]),
    ]


def spread(xs: Sequence[float], fmt: str = "{:.1f}") -> str:
    """``median [min-max]`` of the runs (just the value for one run)."""
    if not xs:
        return "-"
    m = fmt.format(median(xs))
    return m if len(xs) == 1 else f"{m} [{fmt.format(min(xs))}-{fmt.format(max(xs))}]"


def _ratios(rs: Sequence[RowResult], q: float) -> list[float]:
    return [r.p("client", q) / r.p("input topic", q) for r in rs]


def print_rows(rows: dict[int, list[RowResult]], rate: int) -> None:
    """The latency table: one line per client count, medians [min-max] over the runs."""
    table = []
    for clients, rs in rows.items():
        delivered = [len(r.hops.get("client", [])) / max(r.expected, 1) * 100 for r in rs]

        def col(f: Callable[[RowResult], float], rs: list[RowResult] = rs) -> str:
            return spread([f(r) for r in rs])

        table.append(
            [
                f"{rate} ev/s, {clients} clients / {rs[0].assets} assets",
                spread(delivered, "{:.2f}") + " %",
                col(lambda r: r.p("client", 50)),
                col(lambda r: r.p("client", 99)),
                col(lambda r: r.p("input topic", 50)),
                col(lambda r: r.p("input topic", 99)),
                spread(_ratios(rs, 50)) + "x",
                spread(_ratios(rs, 99)) + "x",
            ]
        )
    print_table(
        f"End to end (ms; median [min-max] of {len(next(iter(rows.values())))} run(s))",
        ["row", "delivered", "p50", "p99", "kafka p50", "kafka p99", "p50 ratio", "p99 ratio"],
        table,
    )


def verdict_lines(rows: dict[int, list[RowResult]]) -> list[str]:
    """One line per goal of issue 12 (goal 1), judged on the median ratios of the runs."""
    out = []
    for clients, (max50, max99) in GOALS.items():
        rs = rows.get(clients)
        if not rs:
            out.append(f"verdict {clients} clients: NOT MEASURED (no --rows {clients})")
            continue
        checks = []
        for q, limit in ((50, max50), (99, max99)):
            if limit is not None:
                got = median(_ratios(rs, q))
                checks.append((got <= limit, f"p{q} {got:.1f}x Kafka-only (goal <= {limit:g}x)"))
        ok = all(c for c, _ in checks)
        out.append(
            f"verdict {clients} clients: {'MET' if ok else 'MISSED'}: "
            + ", ".join(t for _, t in checks)
        )
    return out


def print_budget(rows: dict[int, list[RowResult]]) -> None:
    """Per-hop budget of each row, the runs' latencies pooled."""
    for clients, rs in rows.items():
        pooled: dict[str, list[float]] = {}
        for r in rs:
            for hop, xs in r.hops.items():
                pooled.setdefault(hop, []).extend(xs)
        print_table(
            f"Per-hop budget, {clients} clients (ms from produce; runs pooled)",
            ["hop", "events", "p50", "p99", "+p50", "+p99"],
            budget_rows(pooled),
        )
    print(
        "(+p50/+p99: this hop's percentile minus the previous hop's; percentiles do not add, so "
        "a small negative value is noise; the edge hop reads only a few assets)"
    )


def print_cpu(rows: dict[int, list[RowResult]]) -> None:
    """CPU-seconds per 1k delivered events per component, median of the runs."""
    for clients, rs in rows.items():
        names = list(rs[0].cpu)
        per_k = [
            [r.cpu[n] / max(len(r.hops.get("client", [])), 1) * 1000 for n in names] for r in rs
        ]
        print_table(
            f"CPU-s per 1k delivered events, {clients} clients (median of runs)",
            names,
            [[f"{median([row[i] for row in per_k]):.3f}" for i in range(len(names))]],
        )


def print_openfactory(results: dict[bool, list[RowResult]], supported: bool) -> None:
    """Bridge CPU-s per 1k input events with BRIDGE_OPENFACTORY_SUBJECTS on and off."""
    table = []
    for on, rs in results.items():
        per_k = [
            sum(c for n, c in r.cpu.items() if n.startswith("bridge")) / max(r.sent, 1) * 1000
            for r in rs
        ]
        table.append([f"BRIDGE_OPENFACTORY_SUBJECTS={str(on).lower()}", spread(per_k, "{:.4f}")])
    print_table(
        "Bridge CPU-s per 1k events (all bridge workers; median [min-max])",
        ["bridge", "CPU-s / 1k events"],
        table,
    )
    if not supported:
        print(
            "NOTE: this checkout's bridge has no openfactory_subjects setting: both rows ran "
            "the same code (the difference is noise)."
        )
