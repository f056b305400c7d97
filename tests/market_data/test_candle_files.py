"""Candle files in every supported format read back to the same normalised frame."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from agents.market_data.files import CandleFileError, bundled_candles, read_candles, read_raw_candles

BUNDLED_BTC = next(source for source in bundled_candles() if source.symbol == "BTC/USDT").path


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    return read_raw_candles(BUNDLED_BTC).iloc[:500].reset_index(drop=True)


def write_all_formats(frame: pd.DataFrame, folder: Path) -> dict[str, Path]:
    plain = frame[["open_time", "open", "high", "low", "close", "volume"]]
    paths = {
        "csv.gz": folder / "c.csv.gz", "parquet": folder / "c.parquet", "feather": folder / "c.feather",
        "jsonl": folder / "c.jsonl", "json-records": folder / "r.json", "json-arrays": folder / "a.json",
    }
    plain.to_csv(paths["csv.gz"], index=False)
    plain.to_parquet(paths["parquet"])
    plain.to_feather(paths["feather"])
    plain.to_json(paths["jsonl"], orient="records", lines=True)
    plain.to_json(paths["json-records"], orient="records")
    paths["json-arrays"].write_text(json.dumps(plain.to_numpy().tolist()))
    return paths


def test_every_format_reads_back_identically(reference: pd.DataFrame, tmp_path: Path) -> None:
    expected = reference[["open_time", "open", "high", "low", "close", "volume"]]
    for kind, path in write_all_formats(reference, tmp_path).items():
        got = read_raw_candles(path)
        pd.testing.assert_frame_equal(got, expected, check_dtype=True, obj=kind)


@pytest.mark.parametrize(
    ("column", "convert"),
    [
        ("timestamp", lambda ms: ms // 1000),                                     # epoch seconds
        ("timestamp", lambda ms: ms * 1000),                                      # epoch microseconds
        ("date", lambda ms: pd.to_datetime(ms, unit="ms").dt.strftime("%Y-%m-%d %H:%M:%S")),  # naive = UTC
        ("timestamp", lambda ms: pd.to_datetime(ms, unit="ms", utc=True).dt.strftime("%Y-%m-%dT%H:%M:%S%z")),
    ],
)
def test_time_columns_in_any_unit_or_text(reference: pd.DataFrame, tmp_path: Path, column, convert) -> None:
    frame = reference[["open_time", "open", "high", "low", "close", "volume"]].copy()
    frame[column] = convert(frame.pop("open_time"))
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False)
    assert read_raw_candles(path)["open_time"].tolist() == reference["open_time"].tolist()


def test_multi_symbol_files_need_a_symbol(tmp_path: Path, reference: pd.DataFrame) -> None:
    two = pd.concat([reference.assign(symbol="BTCUSDT"), reference.assign(symbol="ETHUSDT")])
    path = tmp_path / "two.csv"
    two.to_csv(path, index=False)
    with pytest.raises(CandleFileError, match=r"holds 2 symbols .*choose one with --symbol"):
        read_raw_candles(path)
    assert len(read_raw_candles(path, symbol="ETH/USDT")) == len(reference)


def test_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(CandleFileError, match="does not exist"):
        read_raw_candles(tmp_path / "missing.csv")
    (tmp_path / "close.csv").write_text("date,close\n2020-01-01,1\n")
    with pytest.raises(CandleFileError, match="no open, high, low, volume"):
        read_raw_candles(tmp_path / "close.csv")
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(CandleFileError, match="unknown candle file type"):
        read_raw_candles(tmp_path / "x.txt")


def test_read_candles_applies_the_quality_policy(reference: pd.DataFrame, tmp_path: Path) -> None:
    shuffled = pd.concat([reference.iloc[::-1], reference.iloc[:5]])  # reversed, plus duplicates
    path = tmp_path / "messy.parquet"
    shuffled.to_parquet(path)
    cleaned = read_candles(path, timeframe="1h")
    assert cleaned["open_time"].tolist() == reference["open_time"].tolist()
