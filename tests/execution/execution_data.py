"""Builders for the execution tests: Binance-like market rules, real bundled candles, a log that records."""

from __future__ import annotations

from decimal import Decimal
from functools import cache
from typing import Any

from agents.market_data.files import bundled_candles, read_raw_candles
from execution.market import Market
from execution.order import Order, OrderRequest, create_order
from topics.market import CandleClosed, timeframe_ms

D = Decimal
BTC = Market("binance", "BTC/USDT", tick_size=D("0.01"), step_size=D("0.00001"),
             min_quantity=D("0.00001"), min_notional=D("5"))
ETH = Market("binance", "ETH/USDT", tick_size=D("0.01"), step_size=D("0.0001"),
             min_quantity=D("0.0001"), min_notional=D("5"))
MARKETS = {m.symbol: m for m in (BTC, ETH)}


@cache
def _real(symbol: str) -> tuple[CandleClosed, ...]:
    source = next(s for s in bundled_candles() if s.symbol == symbol)
    frame = read_raw_candles(source.path)
    step = timeframe_ms(source.timeframe)
    return tuple(
        CandleClosed(
            exchange=source.exchange, symbol=source.symbol, timeframe=source.timeframe,
            open_time=int(row.open_time), close_time=int(row.open_time) + step, open=float(row.open),
            high=float(row.high), low=float(row.low), close=float(row.close), volume=float(row.volume),
        )
        for row in frame.itertuples(index=False)
    )


def real_candles(symbol: str = "BTC/USDT", start: int = 0, count: int = 48) -> list[CandleClosed]:
    """`count` consecutive real hourly candles of the bundled Binance data, from row `start`."""
    return list(_real(symbol)[start : start + count])


def request(**changes: Any) -> OrderRequest:
    """A valid market buy of 0.01 BTC, decided as `dec-1`."""
    values: dict[str, Any] = {
        "decision_id": "dec-1", "exchange": "binance", "symbol": "BTC/USDT", "side": "buy",
        "order_type": "market", "quantity": D("0.01"), "reference_price": D("46000"),
    }
    values.update(changes)
    return OrderRequest(**values)


def new_order(now: int = 0, **changes: Any) -> Order:
    """A validated `new` order for `request(**changes)`."""
    order, _ = create_order(request(**changes), MARKETS.get(changes.get("symbol", "BTC/USDT")), now=now)
    assert order.status == "new", order
    return order


def dec(value: float | str) -> Decimal:
    """A candle float as the paper venue reads it."""
    return D(repr(value)) if isinstance(value, float) else D(value)


class FakeLog:
    """Records what the agent logs: (event, key-values)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def info(self, event: str, **kw: Any) -> None:
        self.events.append((event, kw))

    warning = info

    def named(self, event: str) -> list[dict[str, Any]]:
        return [kw for name, kw in self.events if name == event]
