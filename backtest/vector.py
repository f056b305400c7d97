"""The vectorised fast path: long-only, all-in strategies whose signals are array functions of the candles.

A strategy declares itself vectorisable with an entry in `VECTORISED` (its registry name ->
a function `(params, closes) -> (enter, exit)` of boolean arrays), or with a
`vector_signals(params, closes)` classmethod. The contract is `sma_cross`'s: at a candle where
`enter` is true and the position is flat, buy all in at the next open; where `exit` is true and
the position is long, sell all of it at the next open.

How it stays exact and fast:

- Signals: `sma_cross`'s are compiled (numba) with the streaming indicators' own float
  arithmetic (`indicators.streaming.SMA`: a running total, added to and trimmed in the same
  order; `indicators.crossover.Crossover`'s sides), so they are the event path's bit for bit,
  ties included.
- Fills: only the candles with a signal are booked, in a compiled loop over integers: prices in
  ticks, quantities in steps, money in units of 10^-d (d the most decimals among tick x step,
  the fee quantum, the cash and the minimum notional). Every rule is the paper venue's
  (`execution.paper_gateway`: the open on the tick, slippage rounded against the order and kept
  within the candle, the fee rounded up to its quantum; `execution.order.validate_request`'s
  minimums; `backtest.fills.all_in_quantity`'s sizing), in exact integer arithmetic. If an
  amount would not fit in 64 bits, the same loop runs again as plain Python on Python's
  unbounded integers (slower, same result).

So its trades, fees and final equity are the event path's exactly (tests/backtest). It declines
(returns None, and `run_backtest` falls back to the lean event path) when the venue would do
something it does not model: a fill larger than the candle's volume share (a partial fill), a
zero-volume candle, or a price that rounds to zero; a strategy's own signal function may
decline by raising `AmbiguousSignal`.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import ROUND_CEILING, Decimal, localcontext
from typing import NamedTuple

import numba
import numpy as np

from backtest.engine import _MATH, Candles, Outcome, ProgressFn, step_arrays
from backtest.result import Trade, TradeLog
from execution.market import Market
from execution.paper_gateway import FEE_QUANTUM, candle_price
from strategies.base import Strategy, StrategyParams
from strategies.sma_cross import SmaCrossParams

Signals = Callable[[StrategyParams, np.ndarray], tuple[np.ndarray, np.ndarray]]
INT64_MAX = 2**63 - 1
LIMIT = INT64_MAX // 4  # amounts up to it: sums of two never overflow int64
UNBOUNDED = 1 << 1024  # the Python run's "limit": no product of the backtest comes near it
EXACT_FLOAT = 2**53  # integers below it are exact in a float64
VOLUME_MARGIN = 1e-9  # a fill within this share of the candle's volume cap is too close to call in floats


class AmbiguousSignal(Exception):  # noqa: N818 - control flow: the caller falls back, it never escapes
    """A strategy's vector signals cannot be computed exactly as its streaming form would: decline."""


# ---- signals ------------------------------------------------------------------------------------


@numba.njit(cache=True)
def _sma_cross(closes: np.ndarray, fast: int, slow: int) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover
    """`strategies.sma_cross` over the whole series, with the streaming SMA's and Crossover's arithmetic."""
    n = len(closes)
    enter = np.zeros(n, dtype=np.bool_)
    leave = np.zeros(n, dtype=np.bool_)
    fast_total = 0.0
    slow_total = 0.0
    side = 0  # the Crossover's last strict side: 1 above, -1 below, 0 none yet (or after a gap)
    for i in range(n):
        value = closes[i]
        fast_total += value
        slow_total += value
        if i + 1 < fast:
            side = 0
            continue
        a = fast_total / fast
        fast_total -= closes[i + 1 - fast]
        if i + 1 < slow:
            side = 0
            continue
        b = slow_total / slow
        slow_total -= closes[i + 1 - slow]
        if a > b:
            enter[i] = side == -1
            side = 1
        elif a < b:
            leave[i] = side == 1
            side = -1
    return enter, leave


def sma_cross_signals(params: StrategyParams, closes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`sma_cross`: enter where SMA(fast) crosses above SMA(slow), exit where it crosses below."""
    assert isinstance(params, SmaCrossParams)
    return _sma_cross(np.ascontiguousarray(closes, dtype=np.float64), params.fast, params.slow)  # type: ignore[no-any-return]


VECTORISED: dict[str, Signals] = {"sma_cross": sma_cross_signals}


def signals_for(strategy: Strategy) -> Signals | None:
    """The strategy's vectorised signal function, or None if it has none."""
    own = getattr(type(strategy), "vector_signals", None)
    if callable(own):
        return own  # type: ignore[no-any-return]
    return VECTORISED.get(strategy.name)


# ---- the venue's rules in integers ----------------------------------------------------------------


def _decimals(value: Decimal) -> int:
    """Digits after the point of `value`, at least 0: Decimal("0.010") -> 2, Decimal("5E+2") -> 0."""
    exponent = value.normalize().as_tuple().exponent
    assert isinstance(exponent, int)
    return max(0, -exponent)


def _units(value: Decimal, scale: int) -> int:
    """`value` x 10^scale, which must be a whole number."""
    scaled = value.scaleb(scale, _MATH)
    assert scaled == scaled.to_integral_value(), (value, scale)
    return int(scaled)


def _to_ticks(market: Market, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`candle_price(market, x) / tick` for float candle prices, as int64, and where x is exactly that.

    Fast where x is exactly k ticks written in at most 15 significant digits (then repr(x) is that
    decimal, and rounding it to the tick gives k): every exchange's prices. Any other value is
    made exact one by one with `candle_price` itself.
    """
    tick = market.tick_size
    digits = _decimals(tick)
    ticks = np.zeros(len(values), dtype=np.int64)
    if digits <= 22:  # 10^digits is an exact float64
        per_tick = _units(tick, digits)  # the tick in units of 10^-digits
        count = np.rint(values * (10.0**digits / per_tick))
        units = count * per_tick
        fast = (np.abs(units) < 1e15) & (units / 10.0**digits == values)
        ticks[fast] = count[fast].astype(np.int64)
    else:
        fast = np.zeros(len(values), dtype=bool)
    for j in np.flatnonzero(~fast).tolist():
        exact = candle_price(market, float(values[j])) / tick
        ticks[j] = int(exact) if abs(exact) <= INT64_MAX else -1  # -1: no price this loop can book
    return ticks, fast


def _sell_minimum(market: Market, close: float) -> int:
    """The fewest steps a sell decided at `close` must have to meet the minimum notional (0: any).

    A sell's reference price is min(the close's exact decimal, the close on the tick), as
    `validate_request` sees the execution agent's order; for a close off the tick that is not a
    whole number of ticks, so the booking loop gets the threshold instead.
    """
    exact = Decimal(repr(close))
    reference = min(exact, market.round_price(exact))
    if reference <= 0 or market.min_notional <= 0:
        return 0
    with localcontext(_MATH):
        unit = market.step_size * reference
        steps = int((market.min_notional / unit).to_integral_value(rounding=ROUND_CEILING))
        while steps > 0 and (steps - 1) * unit >= market.min_notional:
            steps -= 1
        while steps * unit < market.min_notional:
            steps += 1
    return steps


# ---- the booking loop ------------------------------------------------------------------------------


def _book(  # noqa: PLR0917, PLR0912, PLR0915 - one flat loop, so that numba compiles it whole
    bars, enter, leave, open_t, high_t, low_t, close_t, sell_min, volume, n,  # type: ignore[no-untyped-def]
    notional_scale, fee_num, fee_den, quantum, rate, slip_up, slip_down, slip_den, min_steps, min_notional,
    room, cash, limit, out_bar, out_side, out_qty, out_price, out_fee, out_cash, out_held,
):  # pragma: no cover - compiled; its Python run is tested through run_vector
    """Book the all-in round trips in integers; returns (fills, declined, cash, held, fees paid).

    Candidate k is the signal at candle bars[k]; open_t[k], high_t[k], low_t[k] are its fill
    candle's prices in ticks and volume[k] its volume; close_t[k] is the signal candle's close
    (sell_min[k] >= 0 instead gives a sell's minimum steps when the close is off the tick). Money
    is in units: q steps at p ticks are q x p x notional_scale, the fee rate is fee_num / fee_den
    rounded up to `quantum`; slippage makes a buy ceil(p x slip_up / slip_den) and a sell
    floor(p x slip_down / slip_den). Prices times the scales fit in `limit` (the caller checks);
    an amount with a quantity in it that would not raises OverflowError.
    """
    balance = cash
    held = cash - cash  # 0, in cash's integer type
    fees = held
    count = 0
    fee_step = fee_den * quantum

    def cost(spend):  # type: ignore[no-untyped-def]  # spend plus its fee, rounded up to the quantum
        return spend + (spend * fee_num + fee_step - 1) // fee_step * quantum

    for k in range(len(bars)):
        i = bars[k]
        if i + 1 >= n:
            break  # decided at the last close: nothing to fill against
        buying = enter[k] and held == 0
        if not buying and not (leave[k] and held > 0):
            continue
        if buying:
            worst = (open_t[k] * slip_up + slip_den - 1) // slip_den  # the next open, slipped, on the tick
            if worst <= 0:
                return count, True, balance, held, fees
            unit = worst * notional_scale  # money per step, before the fee
            quantity = held
            if balance > 0:  # all in: the most steps whose cost and fee fit the cash
                quantity = int(balance / (unit * (1.0 + rate)))
                while True:
                    if quantity + 1 > limit // (unit * max(fee_num, 1)):
                        raise OverflowError("all-in notional")
                    spend = (quantity + 1) * unit
                    if cost(spend) > balance:
                        break
                    quantity += 1
                while quantity > 0:
                    spend = quantity * unit
                    if cost(spend) <= balance:
                        break
                    quantity -= 1
            reference = min(worst, close_t[k])
        else:
            quantity = held
            reference = close_t[k]
        if sell_min[k] >= 0 and not buying:
            notional_ok = quantity >= sell_min[k]
        elif reference <= 0:
            notional_ok = True  # the venue checks a notional only against a positive price
        else:
            if quantity > limit // (reference * notional_scale):
                raise OverflowError("order notional")
            notional_ok = quantity * reference * notional_scale >= min_notional
        if quantity <= 0 or quantity < min_steps or not notional_ok:
            continue  # the event path's order is rejected: no fill, the position stays
        if volume[k] <= 0 or quantity > volume[k] * room * (1.0 - VOLUME_MARGIN):
            return count, True, balance, held, fees  # a partial fill, or too close to call in floats
        # A buy pays at most the candle's high, a sell gets at least its low.
        price = min(worst, high_t[k]) if buying else max((open_t[k] * slip_down) // slip_den, low_t[k])
        if price > 0 and quantity > limit // (price * notional_scale * max(fee_num, 1)):
            raise OverflowError("fill notional")
        spend = quantity * price * notional_scale
        fee = cost(spend) - spend
        if buying:
            balance -= spend + fee
            held += quantity
        else:
            balance += spend - fee
            held -= quantity
        fees += fee
        if balance > limit or fees > limit:
            raise OverflowError("cash")
        out_bar[count] = i + 1
        out_side[count] = 1 if buying else -1
        out_qty[count] = quantity
        out_price[count] = price
        out_fee[count] = fee
        out_cash[count] = balance
        out_held[count] = held
        count += 1
    return count, False, balance, held, fees


class _Rules(NamedTuple):
    """`_book`'s rule arguments, in its order: the market's and the run's money rules in integers."""

    notional_scale: int  # money units of one step at one tick
    fee_num: int  # the fee rate is fee_num / fee_den
    fee_den: int
    quantum: int  # fees round up to it, in money units
    rate: float  # the fee rate as a float: the all-in size's first guess
    slip_up: int  # a buy's price x slip_up / slip_den, a sell's x slip_down / slip_den
    slip_down: int
    slip_den: int
    min_steps: int
    min_notional: int  # money units
    room: float  # steps per unit of candle volume an order may take
    cash: int  # money units

    def fit(self, ticks: list[np.ndarray]) -> bool:
        """Whether prices times the scales (and the rules themselves) stay within `LIMIT`."""
        top = max(int(column.max(initial=0)) for column in ticks)
        slipped = top * max(self.slip_up, abs(self.slip_down))
        integers = [abs(rule) for rule in self if isinstance(rule, int)]
        return (max(integers) <= LIMIT and self.fee_den * self.quantum <= LIMIT and slipped <= LIMIT
                and (slipped // self.slip_den + 1) * self.notional_scale * max(self.fee_num, 1) <= LIMIT)


_book_compiled = numba.njit(cache=True)(_book)


def _floats(counts: np.ndarray, unit: Decimal) -> np.ndarray:
    """float(count x unit) for each count, exactly as `float(Decimal)` rounds it."""
    digits = _decimals(unit)
    whole = _units(unit, digits)  # unit = whole x 10^-digits
    if digits <= 22 and counts.dtype == np.int64 and (np.abs(counts) < EXACT_FLOAT // max(whole, 1)).all():
        return (counts * whole).astype(np.float64) / 10.0**digits  # one correctly rounded division
    return np.array([float(Decimal(count) * unit) for count in counts.tolist()], dtype=np.float64)


def _trades(  # noqa: PLR0917 - the fill columns and how to read them
    symbol: str, times: list[int], quantity: list[int], price: list[int], fee: list[int], market: Market,
    money_unit: Decimal, last: Decimal,
) -> list[Trade]:
    """The round trips of the fills: buy j and sell j + 1 (all in, all out); an open one marked at `last`."""
    tick, step = market.tick_size, market.step_size
    scale = int(tick * step / money_unit)  # money units of one step at one tick
    multiply = _MATH.multiply
    trades = []
    for j in range(0, len(quantity) - 1, 2):
        size, bought, sold, fees = quantity[j], price[j], price[j + 1], fee[j] + fee[j + 1]
        trades.append(Trade(symbol, "long", times[j], times[j + 1], multiply(Decimal(bought), tick),
                            multiply(Decimal(sold), tick), multiply(Decimal(size), step),
                            multiply(Decimal(fees), money_unit),
                            multiply(Decimal(size * (sold - bought) * scale - fees), money_unit)))
    if len(quantity) % 2:
        j = len(quantity) - 1
        with localcontext(_MATH):
            size, entry, fees = quantity[j] * step, price[j] * tick, fee[j] * money_unit
            trades.append(Trade(symbol, "long", times[j], None, entry, None, size, fees,
                                size * last - size * entry - fees))
    return trades


def _integer_rules(
    market: Market, cash: Decimal, fee: Decimal, slippage_bps: Decimal, max_participation: Decimal
) -> tuple[Decimal, _Rules]:
    """The money unit and `_book`'s rule arguments for this market and run."""
    tick, step = market.tick_size, market.step_size
    digits = max(_decimals(amount) for amount in (tick * step, FEE_QUANTUM, cash, market.min_notional))
    fee_num, fee_den = fee.as_integer_ratio()
    slip_num, slip_den = slippage_bps.as_integer_ratio()
    return Decimal(1).scaleb(-digits), _Rules(
        _units(tick * step, digits), fee_num, fee_den, _units(FEE_QUANTUM, digits), float(fee),
        10_000 * slip_den + slip_num, 10_000 * slip_den - slip_num, 10_000 * slip_den,
        int((market.min_quantity / step).to_integral_value(rounding=ROUND_CEILING)),
        _units(market.min_notional, digits), float(max_participation) / float(step), _units(cash, digits),
    )


def run_vector(
    strategy: Strategy, bars: Candles, *, exchange: str, symbol: str, market: Market, cash: Decimal,
    fee: Decimal, slippage_bps: Decimal, max_participation: Decimal, progress: ProgressFn | None = None,
) -> Outcome | None:
    """The backtest of a vectorisable strategy, or None when only the event path models it exactly."""
    del exchange  # the market's rules are the exchange's
    signals = signals_for(strategy)
    assert signals is not None
    try:
        enter, leave = (np.asarray(side, dtype=bool) for side in signals(strategy.params, bars.close_array))
    except AmbiguousSignal:
        return None
    n, arrays = len(bars), bars.arrays
    candidates = np.flatnonzero(enter | leave)
    filled = np.minimum(candidates + 1, n - 1)  # the candle each would fill on (none for the last)
    open_t, high_t, low_t = (_to_ticks(market, arrays[name][filled])[0] for name in ("open", "high", "low"))
    closes = arrays["close"][candidates]
    close_t, exact = _to_ticks(market, closes)
    if min(column.min(initial=0) for column in (open_t, high_t, low_t, close_t)) < 0:
        return None
    sell_min = np.full(len(candidates), -1, dtype=np.int64)
    for j in np.flatnonzero(~exact).tolist():  # a close off the tick: the sell's notional in steps
        sell_min[j] = _sell_minimum(market, float(closes[j]))
    money_unit, rules = _integer_rules(market, cash, fee, slippage_bps, max_participation)
    columns = (candidates, enter[candidates], leave[candidates], open_t, high_t, low_t, close_t, sell_min,
               arrays["volume"][filled])
    try:
        if not rules.fit([open_t, high_t, low_t, close_t]):
            raise OverflowError("prices beyond 64 bits")
        outputs = tuple(np.zeros(len(candidates), dtype=np.int64) for _ in range(7))
        count, declined, balance, held, fees = _book_compiled(*columns, n, *rules, LIMIT, *outputs)
    except OverflowError:  # an amount beyond 64 bits: the same loop on Python's unbounded integers
        outputs = tuple(np.zeros(len(candidates), dtype=object) for _ in range(7))
        python_columns = [column.tolist() for column in columns]
        count, declined, balance, held, fees = _book(*python_columns, n, *rules, UNBOUNDED, *outputs)
    if declined:
        return None
    if progress is not None:
        progress(n, n)
    bar, _, quantity, price, fee_units, cash_after, held_after = (column[:count] for column in outputs)
    bar = bar.astype(np.int64)
    last = Decimal(repr(float(bars.close_array[-1])))
    with localcontext(_MATH):
        final = int(balance) * money_unit + int(held) * market.step_size * last
    cash_floats, held_floats = _floats(cash_after, money_unit), _floats(held_after, market.step_size)
    equity, position = step_arrays(bar, cash_floats, held_floats, float(cash), bars.close_array)
    fills = (bars.open_times[bar].tolist(), quantity.tolist(), price.tolist(), fee_units.tolist())
    trades = TradeLog(lambda: _trades(symbol, *fills, market, money_unit, last), (count + 1) // 2)
    return Outcome(final_equity=final, fees_paid=int(fees) * money_unit, trades=trades, equity=equity,
                   position=position)
