"""Builders for test data: small, valid by default, overridable by keyword."""

from __future__ import annotations

from typing import Any

from topics.envelope import Envelope
from topics.market import CandleClosed

HOUR_MS = 3_600_000


def candle(**changes: Any) -> CandleClosed:
    """A valid BTC/USDT 1h candle opening at `open_time` (default: the epoch hour 0)."""
    values: dict[str, Any] = {
        "exchange": "binance", "symbol": "BTC/USDT", "timeframe": "1h",
        "open_time": 0, "close_time": HOUR_MS,
        "open": 100.0, "high": 110.0, "low": 95.0, "close": 105.0, "volume": 12.5,
    }
    values.update(changes)
    if "open_time" in changes and "close_time" not in changes:
        values["close_time"] = values["open_time"] + HOUR_MS
    return CandleClosed(**values)


def candle_envelope(source: str = "test", **changes: Any) -> Envelope[CandleClosed]:
    """`candle(**changes)` in an envelope timed at its close."""
    payload = candle(**changes)
    return Envelope.create(payload, key=payload.key, ts=payload.close_time, source=source)


def candle_series(count: int, *, start: int = 0, symbol: str = "BTC/USDT") -> list[Envelope[CandleClosed]]:
    """`count` consecutive hourly candle envelopes with a gently rising price."""
    out = []
    for i in range(count):
        price = 100.0 + i
        out.append(candle_envelope(
            symbol=symbol, open_time=start + i * HOUR_MS,
            open=price, high=price + 2, low=price - 1, close=price + 1, volume=10.0 + i,
        ))
    return out
