"""Real bundled candles as CandleClosed envelopes, and a stand-in for execution that fills every intent."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from agents.market_data.core import MarketDataCore, Stream
from agents.market_data.files import bundled_candles, read_raw_candles
from agents.market_data.quality import RawCandle
from topics.envelope import Envelope
from topics.events import Event
from topics.market import CandleClosed
from topics.orders import OrderFilled
from topics.trading import OrderIntent

OPEN_SIZE = Decimal("0.5")


def raw_rows(symbol: str, rows: int) -> list[RawCandle]:
    (source,) = [s for s in bundled_candles() if s.symbol == symbol]
    frame = read_raw_candles(source.path).iloc[:rows]
    columns = (frame.open_time, frame.open, frame.high, frame.low, frame.close, frame.volume)
    return [RawCandle(int(t), o, h, lo, c, v) for t, o, h, lo, c, v in zip(*columns, strict=True)]


def real_candles(symbols: Sequence[str] = ("BTC/USDT", "ETH/USDT"), rows: int = 1000,
                 rename: dict[str, str] | None = None) -> list[Envelope[CandleClosed]]:
    """The first `rows` hourly candles of each symbol, merged by event time as market_data publishes them."""
    names = rename or {}
    streams = [(Stream("binance", names.get(symbol, symbol), "1h", symbol), raw_rows(symbol, rows))
               for symbol in symbols]
    return [env for env in MarketDataCore().run(streams) if isinstance(env.payload, CandleClosed)]


def fill_of(intent_env: Envelope[Event]) -> Envelope[OrderFilled]:
    """The fill execution would report for an intent: all of it, at the candle's close."""
    intent = intent_env.payload
    assert isinstance(intent, OrderIntent)
    quantity = intent.size if intent.size is not None else OPEN_SIZE
    price = Decimal(str(intent.trace["candle"]["close"]))  # type: ignore[index]
    fill = OrderFilled(
        trade_id=f"{intent.decision_id}-1", client_order_id=intent.decision_id[:36], exchange=intent.exchange,
        symbol=intent.symbol, side=intent.side, price=price, quantity=quantity, fee=Decimal(0),
        fee_asset="USDT", liquidity="taker", filled_quantity=quantity, leaves_quantity=Decimal(0),
        ts_event=intent_env.ts,
    )
    return Envelope.create(fill, key=intent.key, ts=intent_env.ts, source="test-execution",
                           caused_by=intent_env)
