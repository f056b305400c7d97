"""Fixtures of the regime tests: real hourly candles from the shared datasets and the bundled set."""

from __future__ import annotations

import pandas as pd
import pytest
from regime_data import HOURLY

from agents.market_data.files import bundled_candles, read_candles, shared_datasets


@pytest.fixture(scope="session")
def btc_hourly() -> pd.DataFrame:
    """BTC/USDT hourly 2017-2022 (Binance spot)."""
    return read_candles(shared_datasets() / HOURLY / "BTC_USDT-1h.csv.gz")


@pytest.fixture(scope="session")
def bundled() -> dict[str, pd.DataFrame]:
    """The 6,803 bundled real hourly candles of each of eight symbols."""
    return {source.symbol: read_candles(source.path) for source in bundled_candles()}
