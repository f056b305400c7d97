"""Real bundled candles and a tiny fill simulator for the strategy tests.

The simulator fills each intent at the next candle's open, as the strategies intend: an entry
opens one unit (or its `size`), a reduce-only intent shrinks the position by its size.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from decimal import Decimal

from agents.market_data.files import bundled_candles, read_raw_candles
from strategies.base import Position
from topics.market import CandleClosed, timeframe_ms
from topics.trading import OrderIntent

Decide = Callable[[int, CandleClosed, Position], list[OrderIntent]]


@functools.cache
def real_candles(symbol: str = "BTC/USDT", count: int = 2500) -> tuple[CandleClosed, ...]:
    """The first `count` real hourly candles of a bundled symbol, as CandleClosed events."""
    source = next(s for s in bundled_candles() if s.symbol == symbol)
    frame = read_raw_candles(source.path).head(count)
    step = timeframe_ms(source.timeframe)
    return tuple(
        CandleClosed(exchange=source.exchange, symbol=source.symbol, timeframe=source.timeframe,
                     open_time=int(row.open_time), close_time=int(row.open_time) + step, open=row.open,
                     high=row.high, low=row.low, close=row.close, volume=row.volume)
        for row in frame.itertuples()
    )


def apply_fills(position: Position, intents: Sequence[OrderIntent]) -> Position:
    """The position after `intents` fill (at the next open)."""
    quantity = position.quantity
    for intent in intents:
        sign = 1 if intent.side == "buy" else -1
        quantity += sign * (intent.size if intent.size is not None else Decimal(1))
    return Position(quantity)


def simulate(decide: Decide, candles: Sequence[CandleClosed]) -> list[tuple[int, OrderIntent]]:
    """Run `decide` candle by candle with the position its own past intents made; (index, intent) pairs."""
    position = Position()
    out: list[tuple[int, OrderIntent]] = []
    for i, candle in enumerate(candles):
        intents = decide(i, candle, position)
        out.extend((i, intent) for intent in intents)
        position = apply_fills(position, intents)
    return out


def actions(run: Sequence[tuple[int, OrderIntent]]) -> list[tuple[int, str]]:
    return [(i, str(intent.trace["action"])) for i, intent in run]
