"""Helpers of the regime tests: candle rows of a frame, a detector run, UTC dates in ms."""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from indicators.catalog import CandleRow
from orchestrator.regime import MarketConditionDetector
from topics.regime import RegimeChanged

HOURLY = "ohlcv/binance_spot_1h_2017-2022"


def utc_ms(day: str) -> int:
    return int(pd.Timestamp(day, tz="UTC").timestamp() * 1000)


def rows(frame: pd.DataFrame) -> list[CandleRow]:
    return [CandleRow(int(r.open_time), r.open, r.high, r.low, r.close, r.volume)
            for r in frame.itertuples(index=False)]


def run(detector: MarketConditionDetector, candles: Iterable[CandleRow]) -> list[RegimeChanged]:
    return [event for candle in candles if (event := detector.update(candle)) is not None]
