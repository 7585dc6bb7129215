"""The end-to-end benchmark's pure logic: stamp parsing, the per-hop budget and the goal verdicts
(no servers; the benchmark itself is a command, not a test)."""

from __future__ import annotations

from bench.e2e_clients import Latencies, expected_deliveries, record_latencies
from bench.e2e_probe import budget_rows
from bench.e2e_report import RowResult, spread, verdict_lines


def _row(clients: int, client: list[float], kafka: list[float]) -> RowResult:
    return RowResult(
        clients=clients,
        assets=100,
        sent=len(kafka),
        elapsed_s=1.0,
        hops={"input topic": kafka, "client": client},
        cpu={},
    )


def test_record_latencies_reads_every_stamp_per_phase() -> None:
    lat: Latencies = {}
    blob = (
        b'data: {"attributes":{"ts_ns":1000000,"ph":1}}\n\n'
        b'data: {"attributes":{"ts_ns":3000000,"ph":2}}\n\n'
        b"data: no stamp\n\n"
    )
    assert record_latencies(blob, 5_000_000, lat) == 2
    assert lat == {1: [4.0], 2: [2.0]}


def test_budget_rows_add_what_each_hop_costs() -> None:
    rows = budget_rows({"input topic": [1.0] * 100, "derived topic": [11.0] * 100})
    assert rows[0] == ["input topic", "100", "1.0", "1.0", "-", "-"]
    assert rows[1] == ["derived topic", "100", "11.0", "11.0", "+10.0", "+10.0"]
    assert rows[2][1] == "0"  # JetStream not measured: said so, not skipped


def test_verdicts_follow_the_goals_ratios() -> None:
    kafka = [10.0] * 100
    rows = {
        100: [_row(100, [29.0] * 100, kafka)],  # p50 2.9x, p99 2.9x: p99 misses (<= 2x)
        1000: [_row(1000, [30.0] * 100, kafka)],  # p99 3.0x: met (<= 3x)
    }
    v100, v1000 = verdict_lines(rows)
    assert v100.startswith("verdict 100 clients: MISSED") and "p99 2.9x" in v100
    assert v1000.startswith("verdict 1000 clients: MET") and "p50" not in v1000


def test_verdict_says_when_a_row_was_not_measured() -> None:
    lines = verdict_lines({100: [_row(100, [10.0], [10.0])]})
    assert lines[1] == "verdict 1000 clients: NOT MEASURED (no --rows 1000)"


def test_spread_is_median_and_range_of_runs() -> None:
    assert spread([3.0, 1.0, 2.0]) == "2.0 [1.0-3.0]"
    assert spread([5.0]) == "5.0"
    assert spread([]) == "-"


def test_expected_deliveries_counts_each_clients_asset() -> None:
    # 5 records over 2 assets: asset 0 gets 3, asset 1 gets 2; 3 clients read assets 0, 1, 0.
    assert expected_deliveries(5, 3, 2) == 3 + 2 + 3
    assert expected_deliveries(1000, 1000, 100) == 10 * 1000
    assert expected_deliveries(5, 3, 0) == 0
