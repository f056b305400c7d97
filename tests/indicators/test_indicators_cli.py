"""`cryptiq indicators` as a user runs it: both forms write the same Parquet; mistakes are one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
from indicator_data import OHLCV

CRYPTIQ = Path(sys.executable).with_name("cryptiq")
ETH = OHLCV / "binance_spot_1h_2017-2022" / "ETH_USDT-1h.csv.gz"


def cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, CRYPTIQ_HOME=str(tmp_path / "home"), CRYPTIQ_LOG_LEVEL="WARNING")
    return subprocess.run(
        [str(CRYPTIQ), "indicators", *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_batch_and_streaming_write_the_same_frame(tmp_path: Path) -> None:
    data = tmp_path / "eth.csv"
    pd.read_csv(ETH, nrows=2500).to_csv(data, index=False)  # the dataset's own format, a slice of it
    batch_out, streaming_out = tmp_path / "batch.parquet", tmp_path / "streaming.parquet"

    batch_run = cli(tmp_path, "--data", str(data), "--out", str(batch_out))
    streaming_run = cli(tmp_path, "--data", str(data), "--out", str(streaming_out), "--streaming")

    assert batch_run.returncode == 0, batch_run.stderr
    assert streaming_run.returncode == 0, streaming_run.stderr
    assert "2,500 candles, 29 indicator columns (batch)" in batch_run.stdout
    assert "(streaming)" in streaming_run.stdout
    batch_frame, streamed = pd.read_parquet(batch_out), pd.read_parquet(streaming_out)
    pd.testing.assert_frame_equal(streamed, batch_frame, check_exact=False, rtol=1e-9, atol=0.0)
    assert batch_frame["open_time"].iloc[0] == pd.read_csv(ETH, nrows=1)["open_time_ms"].iloc[0]
    assert batch_frame["rsi_14"].iloc[:14].isna().all()
    assert batch_frame["rsi_14"].iloc[14:].notna().all()
    assert batch_frame["cdl_engulfing"].iloc[:2].isna().all()
    assert set(batch_frame["cdl_engulfing"].dropna().unique()) <= {-100, -80, 0, 80, 100}


def test_a_chosen_subset_with_its_own_parameters(tmp_path: Path) -> None:
    out = tmp_path / "some.parquet"
    run = cli(tmp_path, "--data", str(ETH), "--out", str(out), "--indicators", "rsi_7, bb_10_1.5,cdl_doji")
    assert run.returncode == 0, run.stderr
    frame = pd.read_parquet(out)
    assert list(frame.columns) == [
        "open_time", "rsi_7", "bb_upper_10_1.5", "bb_middle_10_1.5", "bb_lower_10_1.5", "cdl_doji",
    ]
    assert len(frame) > 40_000


def test_mistakes_are_one_line_errors(tmp_path: Path) -> None:
    out = tmp_path / "x.parquet"
    cases = [
        (["--data", str(tmp_path / "missing.csv"), "--out", str(tmp_path / "x.parquet")], "does not exist"),
        (["--data", str(ETH), "--out", str(tmp_path / "x.csv")], "must end in .parquet"),
        (["--data", str(ETH), "--out", str(tmp_path / "nowhere" / "x.parquet")], "does not exist"),
        (["--data", str(ETH), "--out", str(out), "--indicators", "rsi_x"], "period"),
        (["--data", str(ETH), "--out", str(out), "--indicators", "foo"], "unknown indicator"),
    ]
    for args, message in cases:
        run = cli(tmp_path, *args)
        assert run.returncode == 2, (args, run.stderr)
        lines = run.stderr.strip().splitlines()
        assert len(lines) == 1, run.stderr
        assert lines[0].startswith("error:"), lines[0]
        assert message in lines[0], lines[0]
    assert not (tmp_path / "x.parquet").exists()
