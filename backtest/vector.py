"""The vectorised fast path: long-only, all-in strategies whose signals are array functions of the candles.

A strategy declares itself vectorisable with an entry in `VECTORISED` (its registry name ->
a function `(params, closes) -> (enter, exit)` of boolean arrays), or with a
`vector_signals(params, closes)` classmethod. The contract is `sma_cross`'s: at a candle where
`enter` is true and the position is flat, buy all in at the next open; where `exit` is true and
the position is long, sell all of it at the next open. The path then books only the round trips,
with the venue's fill arithmetic (`execution.paper_gateway`) and the order rules (`validate_request`) in
Decimal, so its trades and final equity are the event path's exactly (tests/backtest).

It declines (returns None, and `run_backtest` falls back to the lean event path) when the
venue would do something it does not model: a fill larger than the candle's volume share (a
partial fill) or on a zero-volume candle, or a signal computed in floats too close to call
(`AmbiguousSignal`).
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal, localcontext

import numpy as np

from backtest.engine import _MATH, Candles, Outcome, ProgressFn, TradeBook, step_series
from backtest.fills import all_in_quantity
from execution.market import Market
from execution.order import OrderRequest, validate_request
from execution.paper_gateway import candle_price, fill_fee, taker_price
from strategies.base import Strategy, StrategyParams
from strategies.sma_cross import SmaCrossParams

Signals = Callable[[StrategyParams, np.ndarray], tuple[np.ndarray, np.ndarray]]
# A float sum in another order than the streaming SMA's may differ in the last bits: a difference of
# the two averages smaller than this share of the price is too close to call.
TIE_TOLERANCE = 1e-9


class AmbiguousSignal(Exception):  # noqa: N818 - control flow: the caller falls back, it never escapes
    """The float signal is too close to call for the streaming form's arithmetic."""


def rolling_mean(values: np.ndarray, period: int) -> np.ndarray:
    """The simple moving average (NaN before `period` values), from a cumulative sum."""
    sums = np.concatenate([[0.0], np.cumsum(values)])
    out = np.full(len(values), np.nan)
    if len(values) >= period:
        out[period - 1:] = (sums[period:] - sums[:-period]) / period
    return out


def crossings(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`indicators.crossover` for series whose NaNs are only a warm-up prefix: (up, down) booleans.

    A cross is a > b after a was last strictly below b (equality is neither side; a missing
    value forgets the side). Raises `AmbiguousSignal` when |a - b| is within the float tolerance.
    """
    diff = a - b
    valid = ~(np.isnan(a) | np.isnan(b))
    if valid.any() and not valid[int(np.argmax(valid)):].all():
        raise AmbiguousSignal("a NaN after the warm-up")
    close = valid & (np.abs(diff) <= TIE_TOLERANCE * np.abs(b))
    if close.any():
        raise AmbiguousSignal(f"{int(close.sum())} candles where the averages are within float tolerance")
    side = np.where(valid, np.sign(np.nan_to_num(diff)), 0.0).astype(np.int8)
    positions = np.arange(len(side))
    last_strict = np.maximum.accumulate(np.where(side != 0, positions, -1))  # newest strict side so far
    previous = np.empty_like(side)
    previous[0] = 0
    prior = last_strict[:-1]
    previous[1:] = np.where(prior >= 0, side[np.maximum(prior, 0)], 0)
    return (side == 1) & (previous == -1), (side == -1) & (previous == 1)


def sma_cross_signals(params: StrategyParams, closes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`sma_cross`: enter where SMA(fast) crosses above SMA(slow), exit where it crosses below."""
    assert isinstance(params, SmaCrossParams)
    return crossings(rolling_mean(closes, params.fast), rolling_mean(closes, params.slow))


VECTORISED: dict[str, Signals] = {"sma_cross": sma_cross_signals}


def signals_for(strategy: Strategy) -> Signals | None:
    """The strategy's vectorised signal function, or None if it has none."""
    own = getattr(type(strategy), "vector_signals", None)
    if callable(own):
        return own  # type: ignore[no-any-return]
    return VECTORISED.get(strategy.name)


def _acceptable(
    market: Market, symbol: str, exchange: str, side: str, quantity: Decimal, *, reference: Decimal, now: int
) -> bool:
    """The order rules the event path applies (`create_order` and the venue's `place`)."""
    request = OrderRequest(decision_id="vector", exchange=exchange, symbol=symbol, side=side,  # type: ignore[arg-type]
                           order_type="market", quantity=quantity, reference_price=reference)
    return not validate_request(request, market, now=now)


def run_vector(
    strategy: Strategy, bars: Candles, *, exchange: str, symbol: str, market: Market, cash: Decimal,
    fee: Decimal, slippage_bps: Decimal, max_participation: Decimal, progress: ProgressFn | None = None,
) -> Outcome | None:
    """The backtest of a vectorisable strategy, or None when only the event path models it exactly."""
    signals = signals_for(strategy)
    assert signals is not None
    try:
        enter, leave = signals(strategy.params, bars.close_array)
    except AmbiguousSignal:
        return None
    n = len(bars)
    o, h, lo, c, v = bars.open, bars.high, bars.low, bars.closes, bars.volume
    book = TradeBook(symbol)
    held, balance, fees_paid = Decimal(0), cash, Decimal(0)
    changes: list[tuple[int, float, float]] = []
    for i in np.flatnonzero(enter | leave).tolist():
        fill_at = i + 1
        if fill_at >= n:
            break  # decided at the last close: nothing to fill against
        buying = bool(enter[i]) and held == 0
        if not buying and not (leave[i] and held > 0):
            continue
        side = "buy" if buying else "sell"
        if buying:
            worst = taker_price(market, side, candle_price(market, o[fill_at]), slippage_bps)
            with localcontext(_MATH):
                quantity = all_in_quantity(market, balance, worst, fee)
            reference = min(worst, market.round_price(Decimal(repr(c[i]))))
        else:
            quantity = market.floor_quantity(held)
            reference = min(Decimal(repr(c[i])), market.round_price(Decimal(repr(c[i]))))
        now = bars.close_time[i]
        if not _acceptable(market, symbol, exchange, side, quantity, reference=reference, now=now):
            continue  # the event path's order is rejected: no fill, the position stays
        volume = Decimal(repr(v[fill_at]))
        if volume <= 0 or quantity > market.floor_quantity(volume * max_participation):
            return None  # a partial fill or none: the venue's model
        cap = candle_price(market, h[fill_at] if buying else lo[fill_at])  # a buy reads `high`, a sell `low`
        price = taker_price(market, side, candle_price(market, o[fill_at]), slippage_bps, high=cap, low=cap)
        cost = fill_fee(price, quantity, fee)
        with localcontext(_MATH):
            if buying:
                balance -= quantity * price + cost
                held += quantity
            else:
                balance += quantity * price - cost
                held -= quantity
            fees_paid += cost
        book.on_fill(side, quantity, price, cost, bars.open_time[fill_at])
        changes.append((fill_at, float(balance), float(held)))
    if progress is not None:
        progress(n, n)
    last = Decimal(repr(c[-1]))
    with localcontext(_MATH):
        final = balance + held * last
    equity, position = step_series(changes, n, float(cash), bars.close_array)
    return Outcome(final_equity=final, fees_paid=fees_paid, trades=book.trades(last), equity=equity,
                   position=position)

