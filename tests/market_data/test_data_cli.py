"""`cryptiq data import | list` as a user runs them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

from agents.market_data.files import bundled_candles, read_raw_candles

CRYPTIQ = Path(sys.executable).with_name("cryptiq")


def cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, CRYPTIQ_HOME=str(home), CRYPTIQ_LOG_LEVEL="WARNING")
    return subprocess.run(
        [str(CRYPTIQ), *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_import_checks_stores_merges_and_lists(tmp_path: Path) -> None:
    eth = next(s for s in bundled_candles() if s.symbol == "ETH/USDT")
    frame = read_raw_candles(eth.path).iloc[:200].reset_index(drop=True)
    frame.loc[5, "close"] = 0.0                       # will be rejected
    first_half = tmp_path / "eth-a.csv"
    frame.iloc[:120].to_csv(first_half, index=False)
    second_half = tmp_path / "eth-b.parquet"
    frame.iloc[100:].to_parquet(second_half)          # overlaps the first by 20 rows
    home = tmp_path / "home"

    one = cli(home, "data", "import", str(first_half), "--exchange", "binance", "--symbol", "ETH/USDT",
              "--timeframe", "1h")
    assert one.returncode == 0, one.stderr
    assert "120 rows read, 119 candles stored (+119 new)" in one.stdout
    assert "1 rejected" in one.stdout
    rejects = pd.read_csv(home / "data" / "binance" / "ETH-USDT" / "1h.rejects.csv")
    assert rejects["reason"].str.contains("non-positive price").all()

    two = cli(home, "data", "import", str(second_half), "--exchange", "binance", "--symbol", "ETH/USDT",
              "--timeframe", "1h")
    assert two.returncode == 0, two.stderr
    assert "199 candles stored (+80 new)" in two.stdout
    stored = pd.read_parquet(home / "data" / "binance" / "ETH-USDT" / "1h.parquet")
    assert stored["open_time"].is_monotonic_increasing
    assert stored["open_time"].is_unique

    listed = cli(home, "data", "list")
    assert listed.returncode == 0
    assert "ETH/USDT" in listed.stdout
    assert "199" in listed.stdout


def test_bad_arguments_are_one_line_errors(tmp_path: Path) -> None:
    for args, message in [
        (("data", "import", str(tmp_path / "none.csv"), "--exchange", "binance", "--symbol", "BTC/USDT",
          "--timeframe", "1h"), "does not exist"),
        (("data", "import", "x.csv", "--exchange", "binance", "--symbol", "BTC/USDT", "--timeframe", "9q"),
         "not a timeframe"),
        (("data", "import", "x.csv", "--exchange", "binance", "--symbol", "BTCUSDT", "--timeframe", "1h"),
         "not a unified symbol"),
    ]:
        result = cli(tmp_path, *args)
        assert result.returncode == 2, result
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert message in result.stderr
