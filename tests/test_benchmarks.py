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
