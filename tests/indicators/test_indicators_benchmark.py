"""`benchmarks/indicators.py --quick` runs and speaks the agreed JSON-lines format."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FIELDS = {"bench", "metric", "value", "unit", "reference", "reference_value", "ratio"}


def test_indicators_benchmark_quick_run_prints_one_json_object_a_line() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "indicators.py"), "--quick"],
        capture_output=True, text=True, timeout=300, check=False, cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [row["metric"] for row in rows] == [
        "streaming_set_per_candle", "streaming_set_vs_talib_stream", "batch_set_1m_candles",
    ]
    for row in rows:
        assert set(row) >= FIELDS
        assert row["bench"] == "indicators"
        assert row["value"] > 0
        assert row["reference_value"] > 0
        # value and reference_value are rounded for print; the ratio is computed before rounding
        assert row["ratio"] == pytest.approx(row["value"] / row["reference_value"], rel=0.1)
