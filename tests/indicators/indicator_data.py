"""Real candles from ../shared/datasets for the indicator tests: several symbols and timeframes."""

from __future__ import annotations

from functools import cache

import pandas as pd

from agents.market_data.files import shared_datasets

OHLCV = shared_datasets() / "ohlcv"

# (id, file, first row, rows): a few thousand candles each keeps the whole directory fast.
DATASETS = (
    ("BTC-1h", "binance_spot_1h_2017-2022/BTC_USDT-1h.csv.gz", 0, 3000),
    ("BTC-1h-2021", "binance_spot_1h_2017-2022/BTC_USDT-1h.csv.gz", 30000, 3000),  # prices near 60,000
    ("ETH-1h", "binance_spot_1h_2017-2022/ETH_USDT-1h.csv.gz", 0, 3000),
    ("SOL-1d", "binance_spot_1d_2017-2022/SOL_USDT-1d.csv.gz", 0, 3000),  # the whole file (791)
    ("DOGE-1m", "binance_spot_1m_2023-03_2023-05/DOGE_USDT-1m.csv.gz", 0, 3000),  # 0.07, flat windows
    ("XRP-5m", "binance_spot_5m_2025-2026/XRP_USDT-5m.csv.gz", 0, 3000),
)


@cache
def load(file: str, start: int, rows: int) -> pd.DataFrame:
    """Candles as the indicator set takes them: open_time (ms), open, high, low, close, volume."""
    frame = pd.read_csv(OHLCV / file, skiprows=range(1, start + 1), nrows=rows)
    frame = frame.rename(columns={"open_time_ms": "open_time"})
    return frame[["open_time", "open", "high", "low", "close", "volume"]].reset_index(drop=True)
