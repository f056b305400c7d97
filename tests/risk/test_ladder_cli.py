"""`cryptiq ladder` as a user runs it: a table of levels and P/L percentiles; mistakes are one line."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd

from agents.market_data.files import bundled_candles

CRYPTIQ = Path(sys.executable).with_name("cryptiq")


def cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, CRYPTIQ_HOME=str(tmp_path / "home"), CRYPTIQ_LOG_LEVEL="WARNING", COLUMNS="120")
    return subprocess.run(
        [str(CRYPTIQ), "ladder", *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_a_ladder_of_the_bundled_candles_prints_levels_and_percentiles(tmp_path: Path) -> None:
    args = ("BTC/USDT", "--risk", "1%", "--side", "short", "--swing-lookback", "336", "--win-rate", "0.55",
            "--simulations", "3000", "--seed", "11")
    run = cli(tmp_path, *args)
    assert run.returncode == 0, run.stderr
    out = run.stdout
    assert out.startswith("BTC/USDT short ladder at 19093.63, swing ")
    assert "risk budget 100.00" in out
    rows = {match[0]: match for match in re.findall(r"│ (entry|exit|stop) +│ +([\d.]+) │ +([\d.]+) │", out)}
    assert set(rows) == {"entry", "exit", "stop"}
    assert len(re.findall(r"│ entry ", out)) == 3
    assert len(re.findall(r"│ exit ", out)) == 2
    assert "Monte Carlo P/L: 3,000 bootstrapped paths x 168 candles" in out
    for column in ("p5", "p25", "p50", "p75", "p95", "P(loss)"):
        assert column in out
    assert cli(tmp_path, *args).stdout == out  # the seed makes it reproducible


def test_a_candle_file_can_be_given(tmp_path: Path) -> None:
    source = next(s for s in bundled_candles() if s.symbol == "ETH/USDT")
    data = tmp_path / "eth.csv"
    pd.read_csv(source.path).iloc[:2000].to_csv(data, index=False)
    run = cli(tmp_path, "ETH/USDT", "--data", str(data), "--risk", "0.02", "--simulations", "500",
              "--equity", "5000")
    assert run.returncode == 0, run.stderr
    assert "ETH/USDT long ladder at " in run.stdout
    assert "equity 5,000.00, risk budget 100.00" in run.stdout


def test_mistakes_are_one_line_errors(tmp_path: Path) -> None:
    bundled = ", ".join(sorted(source.symbol for source in bundled_candles()))
    cases = [
        (("BTC/USDT", "--risk", "0"), "--risk 0: must be above 0% and at most 100% of equity"),
        (("BTC/USDT", "--risk", "150%"), "--risk 150%: must be above 0% and at most 100% of equity"),
        (("BTC/USDT", "--risk", "lots"), "--risk lots: not a number; write 1% or 0.01"),
        (("DOGE/BTC",), f"no bundled candles for DOGE/BTC; bundled: {bundled} (or give --data FILE)"),
        (("BTC/USDT", "--swing-lookback", "99999"), "fewer than --swing-lookback 99999"),
        (("BTC/USDT", "--win-rate", "1.5"), "--win-rate 1.5: must be a fraction between 0 and 1"),
        (("BTC/USDT", "--entries", "0.5,1.5"), "entry ratios must lie between 0 and the stop ratio"),
    ]
    for args, message in cases:
        run = cli(tmp_path, *args)
        assert run.returncode == 2, (args, run.stdout, run.stderr)
        assert run.stdout == ""
        lines = run.stderr.strip().splitlines()
        assert len(lines) == 1, run.stderr
        assert lines[0].startswith("error: ")
        assert message in lines[0], lines[0]
