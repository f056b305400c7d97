"""Indicator speed: the incremental set per candle, and the batch set over 1,000,000 candles.

    python benchmarks/indicators.py [--quick]

The set is the default one of `cryptiq indicators` (15 indicators, 20 numeric columns, 9
candlestick patterns). Each figure runs its reference in the same process, right after it;
the median of the rounds is reported, one JSON object a line:

- `streaming_set_per_candle`: µs to feed one candle to a `StreamingIndicatorSet` (every value
  of one symbol), over the bundled 6,803 real BTC/USDT 1h candles; reference: what an agent
  without incremental indicators does, TA-Lib over the trailing 300 candles for every new
  candle (the same indicators, raw TA-Lib calls on arrays, no pandas).
- `streaming_set_vs_talib_stream`: the same figure against TA-Lib 0.8's own C stream handles
  for the same indicators (fast, but opaque: they cannot be snapshotted to JSON or restored).
- `batch_set_1m_candles`: seconds for `compute_batch` on 1,000,000 synthetic candles (a seeded
  random walk), frame included; reference: the TA-Lib calls alone (issue target: within 1.5x).

`--quick`: 2,000 streamed candles, 200 with the trailing-window reference, 100,000 batch
candles, one round.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import talib
from talib import stream

# This script has the package's name: take its own folder off the path so that `indicators`
# below is the package it measures, not this file.
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != Path(__file__).resolve().parent]

from indicators.catalog import CandleRow, StreamingIndicatorSet, compute_batch  # noqa: E402

BUNDLED = Path(__file__).resolve().parents[1] / "agents" / "market_data" / "bundled" / "BTC_USDT-1h.csv.gz"
WINDOW = 300
CDL = (
    "CDLHAMMER", "CDLINVERTEDHAMMER", "CDLSHOOTINGSTAR", "CDLDOJI", "CDLENGULFING", "CDLMORNINGSTAR",
    "CDLEVENINGSTAR", "CDL3WHITESOLDIERS", "CDL3BLACKCROWS",
)


def real_candles() -> pd.DataFrame:
    frame = pd.read_csv(BUNDLED).rename(columns={"open_time_ms": "open_time"})
    return frame[["open_time", "open", "high", "low", "close", "volume"]]


def synthetic_candles(count: int) -> pd.DataFrame:
    """A seeded random walk with plausible OHLCV: the same candles on every run."""
    rng = np.random.default_rng(7)
    close = 30_000.0 * np.exp(np.cumsum(rng.normal(0.0, 0.004, count)))
    open_ = np.concatenate([[close[0]], close[:-1]])
    high = np.maximum(open_, close) * (1.0 + np.abs(rng.normal(0.0, 0.002, count)))
    low = np.minimum(open_, close) * (1.0 - np.abs(rng.normal(0.0, 0.002, count)))
    volume = rng.lognormal(3.0, 1.0, count)
    times = np.arange(count, dtype=np.int64) * 60_000
    return pd.DataFrame({"open_time": times, "open": open_, "high": high, "low": low, "close": close,
                         "volume": volume})


def talib_direct(o: np.ndarray, h: np.ndarray, lo: np.ndarray, c: np.ndarray, v: np.ndarray) -> list[Any]:
    """The default set as bare TA-Lib calls: the least work that gives the same numbers."""
    returns = np.empty(len(c))
    returns[0] = np.nan
    returns[1:] = np.log(c[1:] / c[:-1])
    typical = (h + lo + c) / 3.0
    return [
        talib.SMA(c, 20), talib.SMA(c, 50), talib.EMA(c, 20), talib.EMA(c, 50), talib.WMA(c, 20),
        talib.RSI(c, 14), talib.ATR(h, lo, c, 14), talib.MACD(c, 12, 26, 9), talib.BBANDS(c, 20, 2.0, 2.0),
        talib.STOCH(h, lo, c), talib.ADX(h, lo, c, 14), talib.OBV(c, v),
        talib.SUM(typical * v, 20) / talib.SUM(v, 20), np.sqrt(talib.VAR(returns, 20)),
        (c - talib.SMA(c, 20)) / np.sqrt(talib.VAR(c, 20)),
        *(getattr(talib, name)(o, h, lo, c) for name in CDL),
    ]


def per_candle_streaming(frame: pd.DataFrame, count: int) -> float:
    rows = [CandleRow(*row) for row in frame.iloc[:count].itertuples(index=False)]
    indicator_set = StreamingIndicatorSet()
    began = time.perf_counter()
    for row in rows:
        indicator_set.update(row)
    return (time.perf_counter() - began) / len(rows) * 1e6


def per_candle_trailing_batch(frame: pd.DataFrame, count: int) -> float:
    arrays = [frame[name].to_numpy() for name in ("open", "high", "low", "close", "volume")]
    began = time.perf_counter()
    for end in range(WINDOW, WINDOW + count):
        window = [values[end - WINDOW:end] for values in arrays]
        talib_direct(*window)
    return (time.perf_counter() - began) / count * 1e6


def per_candle_talib_stream(frame: pd.DataFrame, count: int) -> float:
    """TA-Lib's C handles, opened on the first WINDOW candles, then fed one candle at a time."""
    o, h, lo, c, v = (frame[name].to_numpy() for name in ("open", "high", "low", "close", "volume"))
    head = slice(None, WINDOW)
    returns = np.log(c[1:WINDOW] / c[: WINDOW - 1])
    typical = (h + lo + c) / 3.0
    close_handles = [stream.SMA(c[head], timeperiod=20), stream.SMA(c[head], timeperiod=50),
                     stream.EMA(c[head], timeperiod=20), stream.EMA(c[head], timeperiod=50),
                     stream.WMA(c[head], timeperiod=20), stream.RSI(c[head], timeperiod=14),
                     stream.MACD(c[head]), stream.BBANDS(c[head], timeperiod=20, nbdevup=2.0, nbdevdn=2.0),
                     stream.SMA(c[head], timeperiod=20), stream.VAR(c[head], timeperiod=20)]
    hlc = (h[head], lo[head], c[head])
    hlc_handles = [stream.ATR(*hlc, timeperiod=14), stream.STOCH(*hlc), stream.ADX(*hlc, timeperiod=14)]
    obv = stream.OBV(c[head], v[head])
    pv, volume = stream.SUM(typical[head] * v[head], timeperiod=20), stream.SUM(v[head], timeperiod=20)
    variance = stream.VAR(returns, timeperiod=20)
    patterns = [getattr(stream, name)(o[head], h[head], lo[head], c[head]) for name in CDL]
    began = time.perf_counter()
    for i in range(WINDOW, WINDOW + count):
        oi, hi, li, ci, vi = float(o[i]), float(h[i]), float(lo[i]), float(c[i]), float(v[i])
        for handle in close_handles:
            handle.update(ci)
        for handle in hlc_handles:
            handle.update(hi, li, ci)
        obv.update(ci, vi)
        pv.update((hi + li + ci) / 3.0 * vi)
        volume.update(vi)
        variance.update(float(np.log(ci / float(c[i - 1]))))
        for handle in patterns:
            handle.update(oi, hi, li, ci)
    return (time.perf_counter() - began) / count * 1e6


def seconds(action: Callable[[], object]) -> float:
    began = time.perf_counter()
    action()
    return time.perf_counter() - began


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (f"{platform.node()}: {os.cpu_count()} vCPU {cpu} ({platform.machine()}), Python "
            f"{platform.python_version()}, numpy {np.__version__}, TA-Lib {talib.__version__} "
            f"(C {talib.__ta_version__.decode().split()[0]})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes and one round (a smoke run)")
    args = parser.parse_args()
    streamed, trailing, batch_size = (2_000, 200, 100_000) if args.quick else (6_000, 1_000, 1_000_000)
    rounds = 1 if args.quick else 3
    candles = real_candles()
    streamed = min(streamed, len(candles) - WINDOW)
    synthetic = synthetic_candles(batch_size)
    arrays = [synthetic[name].to_numpy() for name in ("open", "high", "low", "close", "volume")]
    compute_batch(synthetic.iloc[:1000])  # warm imports and caches before timing

    ours, naive, c_handles, batch, direct = [], [], [], [], []
    for _ in range(rounds):
        ours.append(per_candle_streaming(candles, streamed))
        naive.append(per_candle_trailing_batch(candles, trailing))
        c_handles.append(per_candle_talib_stream(candles, streamed))
        batch.append(seconds(lambda: compute_batch(synthetic)))
        direct.append(seconds(lambda: talib_direct(*arrays)))
    common = {"rounds": rounds, "machine": machine()}
    ours_us, naive_us, c_us = statistics.median(ours), statistics.median(naive), statistics.median(c_handles)
    batch_s, direct_s = statistics.median(batch), statistics.median(direct)
    rows = [
        {
            "bench": "indicators", "metric": "streaming_set_per_candle", "value": round(ours_us, 1),
            "unit": "us/candle", "reference": f"TA-Lib over the trailing {WINDOW} candles, every candle",
            "reference_value": round(naive_us, 1), "ratio": round(ours_us / naive_us, 3),
            "candles": streamed, "reference_candles": trailing, **common,
        },
        {
            "bench": "indicators", "metric": "streaming_set_vs_talib_stream", "value": round(ours_us, 1),
            "unit": "us/candle", "reference": "TA-Lib 0.8 C stream handles, same indicators (no snapshots)",
            "reference_value": round(c_us, 1), "ratio": round(ours_us / c_us, 3), "candles": streamed,
            **common,
        },
        {
            "bench": "indicators", "metric": "batch_set_1m_candles", "value": round(batch_s, 3), "unit": "s",
            "reference": "the same indicators as bare TA-Lib calls on arrays",
            "reference_value": round(direct_s, 3), "ratio": round(batch_s / direct_s, 3),
            "candles": batch_size, **common,
        },
    ]
    for row in rows:
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
