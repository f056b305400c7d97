"""Candle files in, one normalised frame out: the formats of ../shared/datasets and common exports.

Reads CSV (also .csv.gz), Parquet, Feather and JSON (records, JSON lines, or freqtrade's
`[[time, open, high, low, close, volume], ...]` arrays). The time column may be epoch seconds,
milliseconds or microseconds, or ISO-8601 text (naive text is read as UTC). The result has the
columns `open_time` (int64 UTC ms of the candle's first instant), `open`, `high`, `low`,
`close`, `volume` (float64) and `symbol` when the file names one.

`read_raw_candles` keeps the rows as the file has them; `read_candles` also applies the data
quality policy (`agents.market_data.quality`), so what it returns is sorted, unique and valid,
and every repair or rejection has been logged.
"""

from __future__ import annotations

import gzip
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from agents.market_data.quality import clean_frame
from config.errors import CryptiqError

OHLCV = ("open", "high", "low", "close", "volume")
# Time columns in order of preference; the first present wins.
TIME_COLUMNS = ("open_time_ms", "open_time", "timestamp", "time", "date", "datetime", "timestamp_utc")
SUFFIXES = (".csv", ".csv.gz", ".parquet", ".feather", ".json", ".json.gz", ".jsonl", ".jsonl.gz")


class CandleFileError(CryptiqError):
    """A candle file that cannot be read or does not hold candles; the message says what to do."""


def read_raw_candles(path: Path | str, *, symbol: str | None = None) -> pd.DataFrame:
    """The candles of `path` in file order, normalised but not checked (see `read_candles`).

    `symbol` selects one instrument of a file that holds several (a `symbol` or `ticker`
    column); such a file without `symbol` is an error listing what it holds.
    """
    path = Path(path)
    frame = _load(path)
    frame = frame.rename(columns={column: str(column).strip().lower() for column in frame.columns})
    if "ticker" in frame.columns and "symbol" not in frame.columns:
        frame = frame.rename(columns={"ticker": "symbol"})
    frame = _select_symbol(frame, path, symbol)
    missing = [column for column in OHLCV if column not in frame.columns]
    if missing:
        raise CandleFileError(
            f"{path} has no {', '.join(missing)} column(s) (it has {', '.join(map(str, frame.columns))}): "
            "a candle file needs open, high, low, close and volume"
        )
    out = pd.DataFrame({"open_time": _open_time_ms(frame, path)})
    for column in OHLCV:
        values = pd.to_numeric(frame[column], errors="coerce")
        if values.isna().all():
            raise CandleFileError(f"{path}: column {column} holds no numbers")
        out[column] = values.astype("float64").to_numpy()
    if "symbol" in frame.columns:
        out["symbol"] = frame["symbol"].astype(str).to_numpy()
    return out


def read_candles(
    path: Path | str, *, symbol: str | None = None, timeframe: str | None = None
) -> pd.DataFrame:
    """The candles of `path` after the quality policy: sorted by open_time, unique, valid OHLC.

    `timeframe` (e.g. "1h") enables gap detection; without it the spacing is inferred from the
    most common step. Repairs and rejections are logged with their reasons.
    """
    raw = read_raw_candles(path, symbol=symbol)
    return clean_frame(raw, timeframe=timeframe, source=str(path)).frame


def _load(path: Path) -> pd.DataFrame:
    name = path.name.lower()
    if not path.is_file():
        raise CandleFileError(f"candle file {path} does not exist: check the path")
    try:
        if name.endswith((".csv", ".csv.gz")):
            return pd.read_csv(path)
        if name.endswith(".parquet"):
            return pd.read_parquet(path)
        if name.endswith(".feather"):
            return pd.read_feather(path)
        if name.endswith((".jsonl", ".jsonl.gz")):
            return pd.read_json(path, lines=True)
        if name.endswith((".json", ".json.gz")):
            return _load_json(path)
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise CandleFileError(f"{path} cannot be read as {name.rsplit('.', 1)[-1]}: {exc}") from exc
    raise CandleFileError(f"{path}: unknown candle file type; use one of {', '.join(SUFFIXES)}")


def _load_json(path: Path) -> pd.DataFrame:
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as handle:
        data = json.load(handle)
    if isinstance(data, list) and data and isinstance(data[0], list):
        # freqtrade / ccxt OHLCV arrays: [time, open, high, low, close, volume]
        return pd.DataFrame([row[:6] for row in data], columns=["open_time", *OHLCV])
    if isinstance(data, dict) and "data" in data:
        data = data["data"]
    return pd.DataFrame(data)


def _select_symbol(frame: pd.DataFrame, path: Path, symbol: str | None) -> pd.DataFrame:
    if "symbol" not in frame.columns:
        return frame
    held = frame["symbol"].astype(str)
    names = sorted(held.unique())
    if symbol is None:
        if len(names) > 1:
            shown = ", ".join(names[:10]) + (", ..." if len(names) > 10 else "")
            raise CandleFileError(f"{path} holds {len(names)} symbols ({shown}): choose one with --symbol")
        return frame
    wanted = {symbol, symbol.replace("/", ""), symbol.replace("/", "-"), symbol.replace("/", "_")}
    chosen = frame[held.isin(wanted)]
    if chosen.empty and len(names) > 1:
        raise CandleFileError(f"{path} has no rows for {symbol}; it holds {', '.join(names[:10])}")
    return chosen if not chosen.empty else frame


def _open_time_ms(frame: pd.DataFrame, path: Path) -> np.ndarray:
    for column in TIME_COLUMNS:
        if column not in frame.columns:
            continue
        values = frame[column]
        if pd.api.types.is_numeric_dtype(values):
            numbers = values.astype("float64").to_numpy()
            scale = _epoch_scale(np.nanmedian(numbers))
            return np.round(numbers * scale).astype("int64")
        try:
            stamps = pd.to_datetime(values, utc=True, format="mixed")
        except (ValueError, TypeError) as exc:
            raise CandleFileError(
                f"{path}: time column {column!r} is neither epoch numbers nor dates"
            ) from exc
        if stamps.isna().any():
            empty = int(stamps.isna().sum())
            raise CandleFileError(f"{path}: time column {column!r} has {empty} empty values")
        return stamps.dt.as_unit("ms").astype("int64").to_numpy()
    raise CandleFileError(
        f"{path} has no time column: expected one of {', '.join(TIME_COLUMNS)}"
    )


def _epoch_scale(typical: float) -> float:
    """Multiplier from the file's epoch unit to ms, judged by magnitude (dates 1973..2286)."""
    if typical > 1e14:
        return 1e-3  # microseconds
    if typical > 1e11:
        return 1.0  # milliseconds
    return 1e3  # seconds


@dataclass(frozen=True)
class CandleSource:
    """One candle file and the stream it feeds: `exchange:symbol:timeframe`."""

    path: Path
    exchange: str
    symbol: str
    timeframe: str


def bundled_candles() -> list[CandleSource]:
    """The real candles shipped inside the package (agents/market_data/bundled/PROVENANCE.md)."""
    folder = Path(__file__).with_name("bundled")
    sources = []
    for path in sorted(folder.glob("*_USDT-1h.csv.gz")):
        base = path.name.split("_USDT-")[0]
        sources.append(CandleSource(path, "binance", f"{base}/USDT", "1h"))
    return sources


def shared_datasets() -> Path:
    """The team's recorded datasets (`shared/datasets` next to the checkout), for tests and benchmarks.

    `CRYPTIQ_SHARED` names the `shared` folder explicitly; otherwise the folder beside the
    repository, then the workplace's `/work/shared`. Installed packages ship only the bundled data.
    """
    explicit = os.environ.get("CRYPTIQ_SHARED")
    candidates = [Path(explicit)] if explicit else []
    candidates += [Path(__file__).resolve().parents[3] / "shared", Path("/work/shared")]
    for folder in candidates:
        if (folder / "datasets").is_dir():
            return folder / "datasets"
    raise CandleFileError(
        f"the shared datasets are not in any of {', '.join(map(str, candidates))}: set CRYPTIQ_SHARED"
    )
