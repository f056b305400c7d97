"""Every benchmark runs and speaks the agreed JSON-lines format (its figures are not judged here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIELDS = {"bench", "metric", "value", "unit", "reference", "reference_value", "ratio"}


@pytest.mark.slow
def test_bus_benchmark_quick_run_prints_one_json_object_a_line() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bus.py"), "--quick", "--events", "2000"],
        capture_output=True, text=True, timeout=300, check=False, cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert {row["metric"] for row in rows} == {
        "echo_agent_end_to_end", "faust_take_events_relay_end_to_end", "agent_ready",
    }
    for row in rows:
        assert set(row) >= FIELDS
        assert row["bench"] == "bus"
        assert row["value"] > 0
        assert row["reference_value"] > 0


@pytest.mark.slow
def test_backtest_benchmark_quick_run_reports_identical_trades() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "backtest.py"), "--quick"],
        capture_output=True, text=True, timeout=600, check=False, cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert {row["metric"] for row in rows} == {
        "event_engine_bars_per_s", "event_engine_vs_bare_loop", "full_event_path_bars_per_s",
        "vector_engine_bars_per_s", "vector_engine_with_trades_bars_per_s",
        "vector_engine_paper_market_bars_per_s",
    }
    for row in rows:
        assert set(row) >= FIELDS
        assert row["bench"] == "backtest"
        assert row["value"] > 0
        assert row["reference_value"] > 0
        assert row["identical_trades"] is True, row


def _quick_rows(script: str) -> list[dict]:
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), "--quick"],
        capture_output=True, text=True, timeout=600, check=False, cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return [json.loads(line) for line in result.stdout.splitlines()]


def _check_graph_rows(rows: list[dict], bench: str) -> None:
    for row in rows:
        assert set(row) >= FIELDS | {"target", "agents"}, row
        assert row["bench"] == bench
        assert row["value"] > 0
        assert row["reference_value"] > 0
        if row["unit"] == "ms":
            assert row["samples"] > 0
            assert row["reference_samples"] == row["candles"]  # the echo answers every candle
            # Paced, not flooded: the producer held the asked rate (within loose bounds on a busy machine).
            assert 0.5 * row["rate"] <= row["achieved_rate"] <= 1.1 * row["rate"], row
    flood = next(row for row in rows if row["metric"] == "flood_throughput")
    assert flood["unit"] == "candles/s"


@pytest.mark.slow
def test_orchestrator_benchmark_quick_run_reports_intent_latency_and_flood_rate() -> None:
    rows = _quick_rows("orchestrator.py")
    assert {row["metric"] for row in rows} == {
        "candle_to_intent_at_100_p50", "candle_to_intent_at_100_p99",
        "candle_to_intent_at_1000_p50", "candle_to_intent_at_1000_p99", "flood_throughput",
    }
    _check_graph_rows(rows, "orchestrator")


@pytest.mark.slow
def test_execution_benchmark_quick_run_reports_decision_and_fill_latency_and_flood_rate() -> None:
    rows = _quick_rows("execution.py")
    assert {row["metric"] for row in rows} == {
        f"candle_to_{stage}_at_{rate}_p{q}" for stage in ("decision", "fill") for rate in (100, 1000)
        for q in (50, 99)
    } | {"flood_throughput"}
    _check_graph_rows(rows, "execution")
    for row in rows:
        if row["metric"].startswith("candle_to_fill"):
            assert row["orders"] >= row["samples"] > 0


@pytest.mark.slow
def test_broker_benchmark_quick_run_reports_the_bare_hop_by_window() -> None:
    rows = _quick_rows("broker.py")
    assert {row["metric"] for row in rows} == {
        f"bare_hop_at_{rate}_p{q}" for rate in (100, 1000) for q in (50, 99)
    }
    for row in rows:
        assert set(row) >= FIELDS | {"windows", "targets"}, row
        assert row["bench"] == "broker"
        assert row["value"] > 0
        assert row["reference_value"] > 0
        assert row["samples"] > 0
        assert row["reference_samples"] > 0
        assert [w["from_s"] for w in row["windows"]] == [0, 2, 4, 6, 8]  # 10 s in 2 s windows
        assert sum(w["samples"] for w in row["windows"]) == row["rate"] * 10  # every candle read back
        assert row["windows"][-1]["p99" if row["metric"].endswith("p99") else "p50"] == row["value"]
