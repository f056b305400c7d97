"""Market data events: closed candles, tickers and trades (floats: market data is float64).

Keys: `exchange:symbol:timeframe` for candles, `exchange:symbol` for tickers and trades, so
per-key order holds on any partition count.
"""

from __future__ import annotations

import math
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from topics.events import Event, register_event


def candle_key(exchange: str, symbol: str, timeframe: str) -> str:
    """The partition key of a candle stream: `binance:BTC/USDT:1h`."""
    return f"{exchange}:{symbol}:{timeframe}"


_UNIT_MS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000, "M": 2_592_000_000}


def timeframe_ms(timeframe: str) -> int:
    """Milliseconds in a ccxt timeframe: `1m` -> 60000, `4h` -> 14400000 (`1M` counts 30 days)."""
    count, unit = timeframe[:-1], timeframe[-1:]
    if not count.isdigit() or unit not in _UNIT_MS or int(count) == 0:
        raise ValueError(f"{timeframe!r} is not a timeframe like 1m, 5m, 1h, 1d")
    return int(count) * _UNIT_MS[unit]


def instrument_key(exchange: str, symbol: str) -> str:
    """The partition key of a ticker or trade stream: `binance:BTC/USDT`."""
    return f"{exchange}:{symbol}"


@register_event
class CandleClosed(Event):
    """One closed OHLCV candle. Its event time is `close_time` (the first ms after the candle)."""

    TYPE: ClassVar[str] = "CandleClosed"
    VERSION: ClassVar[int] = 1

    exchange: str = Field(min_length=1)
    symbol: str = Field(min_length=1, description="ccxt unified symbol, e.g. BTC/USDT")
    timeframe: str = Field(pattern=r"^[0-9]+[smhdwM]$", description="ccxt timeframe, e.g. 1m, 1h, 1d")
    open_time: int = Field(ge=0, description="UTC ms of the candle's first instant")
    close_time: int = Field(ge=0, description="UTC ms just after the candle's last instant")
    open: float = Field(gt=0)
    high: float = Field(gt=0)
    low: float = Field(gt=0)
    close: float = Field(gt=0)
    volume: float = Field(ge=0)

    @model_validator(mode="after")
    def _check_ohlc(self) -> CandleClosed:
        values = (self.open, self.high, self.low, self.close, self.volume)
        if not all(math.isfinite(v) for v in values):
            raise ValueError("open, high, low, close and volume must be finite numbers")
        if not (self.low <= min(self.open, self.close) and max(self.open, self.close) <= self.high):
            raise ValueError("OHLC must satisfy low <= open, close <= high")
        if self.close_time <= self.open_time:
            raise ValueError("close_time must be after open_time")
        return self

    @property
    def key(self) -> str:
        return candle_key(self.exchange, self.symbol, self.timeframe)


@register_event
class TickerUpdated(Event):
    """A ticker snapshot: best bid/ask, last price and rolling 24h volumes where known."""

    TYPE: ClassVar[str] = "TickerUpdated"
    VERSION: ClassVar[int] = 1

    exchange: str = Field(min_length=1)
    symbol: str = Field(min_length=1)
    last: float = Field(gt=0)
    bid: float | None = Field(None, gt=0)
    ask: float | None = Field(None, gt=0)
    base_volume: float | None = Field(None, ge=0)
    quote_volume: float | None = Field(None, ge=0)
    change_pct_24h: float | None = None


@register_event
class TradeExecuted(Event):
    """One public trade printed on the venue."""

    TYPE: ClassVar[str] = "TradeExecuted"
    VERSION: ClassVar[int] = 1

    exchange: str = Field(min_length=1)
    symbol: str = Field(min_length=1)
    trade_id: str = Field(min_length=1)
    price: float = Field(gt=0)
    amount: float = Field(gt=0)
    side: Literal["buy", "sell"] | None = None


class ScanRow(BaseModel):
    """One instrument in a scanner snapshot: where it ranks and why."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rank: int = Field(ge=1)
    exchange: str
    symbol: str
    price: float = Field(gt=0, description="last close")
    change_pct: dict[str, float | None] = Field(
        description="% change of the close over each configured window, keyed by its length in candles"
    )
    quote_volume: float = Field(ge=0, description="sum of volume x close over the volume window")
    volume_z: float | None = Field(None, description="z-score of the last candle's volume in its window")
    bb_position: float | None = Field(
        None, description="where the close sits in its Bollinger band: 0 = lower, 1 = upper, >1 above"
    )
    market_cap: float | None = Field(None, description="when a source provides it; none does yet")
    signals: list[str] = Field(default_factory=list, description="spikes detected on the last candle")


@register_event
class MarketScan(Event):
    """A ranked snapshot of the universe of one timeframe, taken on the scanner's event-time clock."""

    TYPE: ClassVar[str] = "MarketScan"
    VERSION: ClassVar[int] = 1

    timeframe: str = Field(pattern=r"^[0-9]+[smhdwM]$")
    as_of: int = Field(ge=0, description="event time of the newest candle in the snapshot, UTC ms")
    rank_by: str
    rows: list[ScanRow]
