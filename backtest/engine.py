"""The event-driven backtest: the same strategy, risk and paper-venue cores as the live agents, in process.

`run_backtest` replays candles in order. At each candle, as the live agents would see it:

1. orders waiting for this candle trade on the `PaperVenue` (`execution.paper_gateway`): a
   market order fills at the open (never on the candle it was decided on), with the venue's
   slippage, fees and volume participation; the venue's `Ledger` books the fills;
2. the strategy decides at the close with its position after those fills (`Strategy.on_candle`);
3. its intents become orders, placed at the candle's close time, so they fill on the next one.

Sizing, the one thing a live intent gets from the risk agent:

- `risk=None` (the default, a pass-through): an intent with a `size` is ordered as is (reduce-only
  ones never more than the position); an intent without one is "all in": `trace["allocation"]`
  (default 1) of the cash, sized at the next candle's open it fills at, fee included, like a
  venue's market order for a quote amount. This is how `sma_cross` (long only, all in) runs.
- `risk=RiskConfig(...)`: every intent goes through `execution.risk.RiskEngine` exactly as the
  risk agent does it, with the same `execution.risk_book.RiskBook` (price: the last close;
  ATR(14) of the candles; the portfolio at mark; approved orders not filled yet count against
  the limits), the approved size is ordered as the execution agent does it, and the decision's
  stop-loss, take-profit and trailing stop protect the position with the execution agent's
  rules (`execution.exits`: a market exit at the close of the candle that reaches them). Same
  config, same orders (tests/backtest/test_live_parity.py).

Three paths give the same orders, fills, trades and final equity (tests/backtest prove it):

- `event`: every candle is a validated `CandleClosed` and steps the venue; equity is the ledger's.
- `lean` (the default for strategies without a vectorised form): the per-candle hot path keeps
  pydantic out of the loop. The strategy gets a slotted `CandleView` with the same fields, the
  venue is stepped only while orders wait or when the strategy decides, and equity is
  float(cash) + float(position) x close per bar. Orders, fills and the ledger are the same cores.
- `vector`: for strategies with a vectorised signal form (`backtest.vector`), signals come from
  arrays and only the round trips are booked, with the venue's fill arithmetic
  (`execution.paper_gateway.taker_price`, `fill_fee`).
  If a fill would need what only the venue models (a partial fill by volume, a zero-volume
  candle) or a signal is too close to call in floats, the run falls back to `lean`.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from decimal import Context, Decimal, localcontext
from typing import Any, Literal

import numpy as np
import pandas as pd

from backtest.fills import all_in_quantity
from backtest.result import BacktestResult, Trade
from config.errors import CryptiqError
from config.settings import PaperTradingConfig, RiskConfig
from execution.exits import NOTHING_TO_REDUCE, ExitPlan, Protection, arm, exit_plan, reducible
from execution.market import Market
from execution.order import OPEN, TERMINAL, OrderRequest, client_order_id, create_order, reject
from execution.paper_account import paper_market
from execution.paper_gateway import PaperConfig, PaperVenue, candle_price, taker_price
from execution.risk import MarketSnapshot, RiskEngine
from execution.risk_book import ATR_PERIOD, RiskBook
from indicators.streaming import ATR
from strategies import STRATEGIES
from strategies.base import FLAT, Position, Strategy, make_params
from topics.market import CandleClosed, timeframe_ms
from topics.orders import OrderEvent, OrderFilled, OrderUpdated, split_symbol
from topics.trading import OrderIntent, RiskDecision

Mode = Literal["auto", "event", "lean", "vector"]
ZERO = Decimal(0)
EXCHANGE = "backtest"
PORTFOLIO = "backtest"  # the portfolio the risk decisions value
ORDER_TYPES = {"market": "market", "limit": "limit", "stop": "stop"}  # the execution agent's mapping
_MATH = Context(prec=60)
_UNITS = (("w", 604_800_000), ("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1_000))
COLUMNS = ("open_time", "open", "high", "low", "close", "volume")


class BacktestError(CryptiqError):
    """The backtest cannot run on these inputs; the message says what to change."""


# ---- inputs -------------------------------------------------------------------------------------


class Candles:
    """The candles of one instrument: validated float64 arrays, and the same as plain Python lists (the
    per-candle loops' fastest reads), made on first use (a million bars take ~40 ms a column)."""

    __slots__ = ("_lists", "arrays", "close_array", "open_times", "step", "timeframe")

    def __init__(self, frame: pd.DataFrame, timeframe: str | None = None) -> None:
        missing = [column for column in COLUMNS if column not in frame.columns]
        if missing:
            raise BacktestError(f"candles need the columns {', '.join(COLUMNS)}; "
                                f"missing {', '.join(missing)}")
        if len(frame) < 2:
            raise BacktestError(f"a backtest needs at least 2 candles, got {len(frame)}")
        times = frame["open_time"].to_numpy(dtype=np.int64)
        steps = np.diff(times)
        if (steps <= 0).any():
            raise BacktestError("candles must be sorted by open_time with no duplicates (read them with "
                                "agents.market_data.files.read_candles, which applies the quality policy)")
        values = {name: frame[name].to_numpy(dtype=np.float64) for name in COLUMNS[1:]}
        o, h, lo, c, v = (values[name] for name in COLUMNS[1:])
        finite = np.isfinite(np.vstack([o, h, lo, c, v])).all()
        if not finite or (np.minimum(o, c) < lo).any() or (np.maximum(o, c) > h).any() or (lo <= 0).any() \
                or (v < 0).any():
            raise BacktestError("candles must be finite with 0 < low <= open, close <= high and volume >= 0")
        self.timeframe = timeframe or _timeframe(int(np.median(steps)))
        self.step = timeframe_ms(self.timeframe)
        self.open_times = times
        self.arrays = values  # open, high, low, close, volume
        self.close_array = c
        self._lists: dict[str, list[Any]] = {}

    def __len__(self) -> int:
        return len(self.open_times)

    def _list(self, name: str) -> list[Any]:
        made = self._lists.get(name)
        if made is None:
            source = {"open_time": self.open_times, "close_time": self.open_times + self.step}.get(name)
            made = self._lists[name] = (self.arrays[name] if source is None else source).tolist()
        return made

    open_time: list[int] = property(lambda self: self._list("open_time"))  # type: ignore[assignment]
    close_time: list[int] = property(lambda self: self._list("close_time"))  # type: ignore[assignment]
    open: list[float] = property(lambda self: self._list("open"))  # type: ignore[assignment]
    high: list[float] = property(lambda self: self._list("high"))  # type: ignore[assignment]
    low: list[float] = property(lambda self: self._list("low"))  # type: ignore[assignment]
    closes: list[float] = property(lambda self: self._list("close"))  # type: ignore[assignment]
    volume: list[float] = property(lambda self: self._list("volume"))  # type: ignore[assignment]

    @property
    def index(self) -> pd.DatetimeIndex:
        return pd.DatetimeIndex(pd.to_datetime(self.open_times, unit="ms", utc=True), name="time")

    def view(self, i: int, exchange: str, symbol: str) -> CandleView:
        return CandleView(exchange, symbol, self.timeframe, self.open_time[i], self.close_time[i],
                          self.open[i], self.high[i], self.low[i], self.closes[i], self.volume[i])

    def event(self, i: int, exchange: str, symbol: str) -> CandleClosed:
        """Candle `i` as the validated event the live agents receive."""
        return CandleClosed(exchange=exchange, symbol=symbol, timeframe=self.timeframe,
                            open_time=self.open_time[i], close_time=self.close_time[i], open=self.open[i],
                            high=self.high[i], low=self.low[i], close=self.closes[i], volume=self.volume[i])


def _timeframe(step_ms: int) -> str:
    """The ccxt timeframe of a candle spacing: 60000 -> 1m, 3600000 -> 1h."""
    for unit, size in _UNITS:
        if step_ms % size == 0:
            return f"{step_ms // size}{unit}"
    raise BacktestError(f"candles {step_ms} ms apart have no timeframe; pass timeframe explicitly")


class CandleView:
    """A closed candle with `CandleClosed`'s fields, for the hot loop: built from validated arrays, so it
    skips pydantic (the style guide's rule: validate once at the topic boundary, not per bar)."""

    __slots__ = ("close", "close_time", "exchange", "high", "low", "open", "open_time", "symbol", "timeframe",
                 "volume")

    def __init__(  # noqa: PLR0917 - positional like a tuple row: the hot loop builds one per candle
        self, exchange: str, symbol: str, timeframe: str, open_time: int, close_time: int, open_: float,
        high: float, low: float, close: float, volume: float,
    ) -> None:
        self.exchange, self.symbol, self.timeframe = exchange, symbol, timeframe
        self.open_time, self.close_time = open_time, close_time
        self.open, self.high, self.low, self.close, self.volume = open_, high, low, close, volume

    @property
    def key(self) -> str:
        return f"{self.exchange}:{self.symbol}:{self.timeframe}"


def make_strategy(strategy: Strategy | str, params: Mapping[str, object] | None = None) -> Strategy:
    """A fresh strategy: by registry name (with `params`), or a new one with the parameters of `strategy`
    (a used instance carries state, and a backtest must start from none)."""
    if isinstance(strategy, str):
        cls = STRATEGIES.get(strategy)
        if cls is None:
            raise BacktestError(f"unknown strategy {strategy!r}; known: {', '.join(sorted(STRATEGIES))}")
        return cls(make_params(cls, params))
    if params:
        raise BacktestError("give params with a strategy name, not with a strategy instance")
    return type(strategy)(strategy.params)


def default_market(symbol: str, exchange: str = EXCHANGE, paper: PaperTradingConfig | None = None) -> Market:
    """The paper agents' generic rules (`paper.tick_size`, `step_size`, `min_notional`)."""
    return paper_market(paper or PaperTradingConfig(), exchange, symbol)


def _sync(step: Coroutine[Any, Any, list[OrderEvent]]) -> list[OrderEvent]:
    """Run one of the venue's `async` methods that never awaits (the paper venue is pure)."""
    try:
        step.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    step.close()
    raise RuntimeError("the paper venue awaited something: the backtest can only drive a pure venue")


# ---- trades -------------------------------------------------------------------------------------


class _RoundTrip:
    __slots__ = ("direction", "entry_qty", "entry_time", "entry_value", "exit_qty", "exit_time", "exit_value",
                 "fees")

    def __init__(self, direction: int, entry_time: int) -> None:
        self.direction, self.entry_time = direction, entry_time
        self.entry_qty = self.entry_value = self.exit_qty = self.exit_value = self.fees = ZERO
        self.exit_time: int | None = None


def _average(value: Decimal, quantity: Decimal) -> Decimal:
    with localcontext(_MATH):
        price = value / quantity
        return price if price * quantity == value else price.quantize(Decimal("1e-12"))


class TradeBook:
    """Round trips from fills: a trade opens when the position leaves zero and closes when it returns."""

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.closed: list[Trade] = []
        self.current: _RoundTrip | None = None
        self.position = ZERO

    def on_fill(self, side: str, quantity: Decimal, price: Decimal, fee: Decimal, at: int) -> None:
        signed = quantity if side == "buy" else -quantity
        with localcontext(_MATH):
            if self.current is None or (self.position > 0) == (signed > 0):
                trip = self.current = self.current or _RoundTrip(1 if signed > 0 else -1, at)
                trip.entry_qty += quantity
                trip.entry_value += quantity * price
                trip.fees += fee
                self.position += signed
                return
            trip = self.current
            closing = min(quantity, abs(self.position))
            share = fee if closing == quantity else fee * closing / quantity
            trip.exit_qty += closing
            trip.exit_value += closing * price
            trip.fees += share
            trip.exit_time = at
            self.position += signed
            if closing == quantity and self.position != 0:
                return
            self.closed.append(self._trade(trip, None))
            self.current = None
            if quantity > closing:  # the fill turned the position around: the rest opens a new trade
                self.on_fill(side, quantity - closing, price, fee - share, at)

    def _trade(self, trip: _RoundTrip, mark: Decimal | None) -> Trade:
        with localcontext(_MATH):
            held = trip.entry_qty - trip.exit_qty
            value = trip.exit_value + (held * mark if mark is not None else ZERO)
            pnl = trip.direction * (value - trip.entry_value) - trip.fees
        return Trade(
            symbol=self.symbol, side="long" if trip.direction > 0 else "short", entry_time=trip.entry_time,
            exit_time=trip.exit_time if mark is None else None,
            entry_price=_average(trip.entry_value, trip.entry_qty),
            exit_price=_average(trip.exit_value, trip.exit_qty) if mark is None else None,
            size=trip.entry_qty, fees=trip.fees, pnl=pnl,
        )

    def trades(self, mark: Decimal) -> list[Trade]:
        """The closed trades, then the open one (exit None, P/L at `mark`)."""
        return self.closed + ([self._trade(self.current, mark)] if self.current is not None else [])


# ---- the account: venue, ledger, orders -----------------------------------------------------------


class Book:
    """One backtest account: the paper venue (and its ledger), orders in flight, trades, and sizing."""

    def __init__(
        self, *, exchange: str, symbol: str, market: Market, cash: Decimal, fee: Decimal,
        slippage_bps: Decimal, max_participation: Decimal, risk: RiskConfig | None,
        impact_bps: Decimal = ZERO,
    ) -> None:
        self.exchange, self.symbol, self.market = exchange, symbol, market
        self.quote = split_symbol(symbol)[1]
        self.fee, self.slippage_bps = fee, slippage_bps
        config = PaperConfig(maker_fee_rate=fee, taker_fee_rate=fee, slippage_bps=slippage_bps,
                             impact_bps=impact_bps, max_participation=max_participation)
        self.venue = PaperVenue(exchange, [market], config, balances={self.quote: cash})
        self.ledger = self.venue.ledger
        self.risk = RiskEngine(risk) if risk is not None else None
        self.atr = ATR(ATR_PERIOD) if risk is not None else None
        self.atr_value: float | None = None
        self.pending: list[tuple[OrderIntent, Decimal]] = []  # all-in market intents for the next open
        self.open_orders: dict[str, OrderUpdated] = {}
        self.events: list[OrderEvent] = []  # every order event, in order
        self.decisions: list[RiskDecision] = []
        # the portfolio and the approved orders not filled yet, as the risk agent keeps them
        self.risk_book: RiskBook | None = None
        if risk is not None:
            self.risk_book = RiskBook(self.ledger, quote=self.quote, portfolio=PORTFOLIO)
            self.risk_book.exchanges[symbol] = exchange
        self.plans: dict[str, ExitPlan] = {}  # entry client order id -> the exits its decision set
        self.protection: Protection | None = None  # the armed exits of the position
        self.trades = TradeBook(symbol)
        self.quantity = ZERO
        self.position: Position = FLAT
        self.changes: list[tuple[int, float, float]] = []  # (bar, cash, position) after a bar's fills
        self.seen = -1  # the last bar the venue traded

    @property
    def busy(self) -> bool:
        """Orders wait for the next candle: the venue must see it."""
        return bool(self.pending or self.open_orders or self.protection)

    @property
    def cash(self) -> Decimal:
        return self.ledger.cash.get(self.quote, ZERO)

    def trade_bar(self, i: int, candle: CandleClosed | CandleView) -> None:
        """Place the all-in orders sized at this open, then let the venue trade the candle."""
        if self.pending:
            waiting, self.pending = self.pending, []
            for intent, allocation in waiting:
                self._place_all_in(intent, allocation, candle)
        events = self.venue.on_candle(candle)  # type: ignore[arg-type]
        held = self.quantity
        self._absorb(events, candle.open_time, i)
        self.seen = i
        if self.risk is not None:
            self._arm_exits(events, held)
            if self.protection is not None:
                self._protect(candle)

    def decide(self, i: int, candle: CandleClosed | CandleView, intents: Sequence[OrderIntent]) -> None:
        """Turn the intents decided at candle `i`'s close into orders (placed at its close time)."""
        if self.seen != i:  # lean path: no order waited, so the venue skipped this candle; marks matter now
            self.trade_bar(i, candle)
        for intent in intents:
            if self.risk is not None:
                self._through_risk(intent, candle)
            else:
                self._pass_through(intent, candle)

    # -- sizing without risk ------------------------------------------------------------------------

    def _pass_through(self, intent: OrderIntent, candle: CandleClosed | CandleView) -> None:
        reference = Decimal(repr(candle.close))
        if intent.reduce_only:
            size = self._reducible(intent.side, intent.size)
            if size > 0:
                self._order(intent.decision_id, intent.side, intent.entry_type, size, intent.entry_price,
                            reference, now=candle.close_time)
            return
        allocation = _allocation(intent)
        if intent.size is not None:
            size = self.market.floor_quantity(intent.size)
        elif intent.entry_type == "market":
            self.pending.append((intent, allocation))
            return
        else:
            assert intent.entry_price is not None  # OrderIntent requires it for limit and stop
            with localcontext(_MATH):
                size = all_in_quantity(self.market, self.cash * allocation, intent.entry_price, self.fee)
        self._order(intent.decision_id, intent.side, intent.entry_type, size, intent.entry_price, reference,
                    now=candle.close_time)

    def _place_all_in(
        self, intent: OrderIntent, allocation: Decimal, candle: CandleClosed | CandleView
    ) -> None:
        """At the open it fills at: as much as the cash buys at the worst price slippage allows."""
        market = self.market
        price = taker_price(market, intent.side, candle_price(market, candle.open), self.slippage_bps)
        with localcontext(_MATH):
            size = all_in_quantity(market, self.cash * allocation, price, self.fee)
        self._order(intent.decision_id, intent.side, "market", size, None, price, now=candle.open_time)

    def _reducible(self, side: str, size: Decimal | None) -> Decimal:
        """What a reduce-only order may still take off (the execution agent's rule, `execution.exits`)."""
        held = self.quantity
        wanted = size if size is not None else abs(held)
        return reducible(self.market, held, side, wanted, self.open_orders.values())

    # -- sizing by the risk engine, as the risk and execution agents do -------------------------------

    def _through_risk(self, intent: OrderIntent, candle: CandleClosed | CandleView) -> None:
        """The risk agent's `_decide` (the price: the last close; ATR(14) of the candles), then the
        execution agent's handling of the decision."""
        assert self.risk is not None
        assert self.risk_book is not None
        portfolio = self.risk_book.portfolio(candle.close_time)
        self.risk.observe(portfolio)
        atr = None if self.atr_value is None else Decimal(repr(self.atr_value))
        market = MarketSnapshot(price=Decimal(repr(candle.close)), atr=atr)
        decision = self.risk_book.decide(self.risk, intent, portfolio, market)
        self.decisions.append(decision)
        if decision.verdict == "rejected":
            return
        size = decision.size
        refuse = None
        if decision.sizing == "reduce_only":
            reducible_now = self._reducible(decision.side, decision.size)
            refuse = NOTHING_TO_REDUCE if reducible_now <= 0 else None
            size = decision.size if refuse else reducible_now
        self._order(decision.decision_id, decision.side, decision.entry_type, size, decision.entry_price,
                    decision.entry_price, now=candle.close_time, plan=exit_plan(decision), refuse=refuse)

    # -- orders ------------------------------------------------------------------------------------

    def _order(  # noqa: PLR0917 - the execution agent's OrderRequest fields, in its order
        self, decision_id: str, side: str, entry_type: str, size: Decimal, entry: Decimal | None,
        reference: Decimal | None, *, now: int, plan: ExitPlan | None = None, refuse: str | None = None,
    ) -> list[OrderEvent]:
        """Create and place an order as the execution agent does; `refuse`: reject it with that reason."""
        market = self.market
        request = OrderRequest(
            decision_id=decision_id, exchange=self.exchange, symbol=self.symbol, side=side,  # type: ignore[arg-type]
            order_type=ORDER_TYPES[entry_type], quantity=size,  # type: ignore[arg-type]
            limit_price=market.round_price(entry) if entry_type == "limit" and entry else None,
            stop_price=market.round_price(entry) if entry_type == "stop" and entry else None,
            reference_price=reference,
        )
        order, events = create_order(request, market, now=now)
        if order.status == "new" and refuse is not None:
            events += reject(order, now=now, reasons=[refuse])[1]
        elif order.status == "new":
            if plan is not None:
                self.plans[order.client_order_id] = plan
            events += _sync(self.venue.place(order, now=now))
        self._absorb(events, now, self.seen)
        return events

    # -- protective exits, as the execution agent runs them ---------------------------------------

    def _arm_exits(self, events: list[OrderEvent], held: Decimal) -> None:
        """Entries filled: their decisions' exits protect the position, judged as the execution agent's
        `_arm` judges them, on the position right after each fill (`held`: before the candle's)."""
        for event in events:
            if not isinstance(event, OrderFilled):
                continue
            with localcontext(_MATH):
                held += event.quantity if event.side == "buy" else -event.quantity
            plan = self.plans.get(event.client_order_id)
            armed = arm(plan, held, event.price, self.protection) if plan is not None else None
            if armed is not None:
                self.protection = armed
        for event in events:  # after arming: a fill's `filled` update comes before the fill itself
            if isinstance(event, OrderUpdated) and event.status in TERMINAL:
                self.plans.pop(event.client_order_id, None)

    def _protect(self, candle: CandleClosed | CandleView) -> None:
        """A market exit at the close when the candle reached the stop or the target, else ratchet the
        trailing stop (the execution agent's `_protect`; the stop first when a candle reaches both)."""
        protection = self.protection
        assert protection is not None
        held = self.quantity
        if not protection.covers(held):
            self.protection = None  # closed (or turned) by other orders: nothing to protect
            return
        if protection.exit_cid is not None and protection.exit_cid in self.open_orders:
            return  # the exit is working
        high, low = Decimal(repr(candle.high)), Decimal(repr(candle.low))
        kind = protection.reached(high, low)
        if kind is None:
            protection.ratchet(high, low)
            return
        side = protection.exit_side
        size = self._reducible(side, abs(held))
        if size <= 0:
            return  # other open orders already close the position
        decision_id = protection.exit_decision_id(kind)
        protection.sent(client_order_id(decision_id))
        events = self._order(decision_id, side, "market", size, None, Decimal(repr(candle.close)),
                             now=candle.close_time)
        if any(isinstance(e, OrderUpdated) and e.status == "rejected" for e in events):
            # e.g. a remnant below the venue's minimum: retrying every candle would only repeat it
            self.protection = None

    def _absorb(self, events: list[OrderEvent], at: int, i: int) -> None:
        if not events:
            return
        self.events += events
        filled = False
        for event in events:
            if isinstance(event, OrderFilled):
                self.trades.on_fill(event.side, event.quantity, event.price, event.fee, at)
                filled = True
                if self.risk_book is not None:
                    self.risk_book.filled(event)
                continue
            if event.status in OPEN:
                self.open_orders[event.client_order_id] = event
            else:
                self.open_orders.pop(event.client_order_id, None)
            if self.risk_book is not None:
                self.risk_book.order_changed(event)
        if filled:
            held = self.ledger.positions.get(self.symbol)
            self.quantity = held.quantity if held is not None else ZERO
            self.position = Position(self.quantity) if self.quantity else FLAT
            self.changes.append((i, float(self.cash), float(self.quantity)))


def _allocation(intent: OrderIntent) -> Decimal:
    raw = intent.trace.get("allocation", 1.0)
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not 0 < raw <= 1:
        raise BacktestError(f"intent {intent.decision_id}: trace allocation must be in (0, 1], got {raw!r}")
    return Decimal(repr(float(raw)))


@dataclass(frozen=True)
class Outcome:
    """What a path hands back to `run_backtest` to become a `BacktestResult`."""

    final_equity: Decimal
    fees_paid: Decimal
    trades: Sequence[Trade]
    equity: np.ndarray
    position: np.ndarray
    events: tuple[OrderEvent, ...] = ()
    decisions: tuple[RiskDecision, ...] = ()


# ---- the loops ----------------------------------------------------------------------------------


ProgressFn = Callable[[int, int], None]


def _ticker(progress: ProgressFn | None, total: int) -> tuple[int, ProgressFn]:
    """How often to report, and whom: about 200 reports a run."""
    return max(1, total // 200), progress or (lambda done, of: None)


def _run_event(book: Book, strategy: Strategy, candles: Candles, progress: ProgressFn | None) -> tuple[
        np.ndarray, np.ndarray]:
    """The full path: validated events, the venue every candle, the ledger's equity every close."""
    n = len(candles)
    equity, position = np.empty(n), np.empty(n)
    every, report = _ticker(progress, n)
    for i in range(n):
        candle = candles.event(i, book.exchange, book.symbol)
        book.trade_bar(i, candle)
        if book.atr is not None:
            book.atr_value = book.atr.update(candle.high, candle.low, candle.close)
        intents = strategy.on_candle(candle, None, book.position)
        if intents:
            book.decide(i, candle, intents)
        equity[i] = float(book.ledger.equity(book.quote))
        position[i] = float(book.quantity)
        if i % every == 0:
            report(i, n)
    return equity, position


def _run_lean(book: Book, strategy: Strategy, candles: Candles, progress: ProgressFn | None) -> None:
    """The hot path: `CandleView`s, the venue only while orders wait or when the strategy decides."""
    n = len(candles)
    exchange, symbol, timeframe = book.exchange, book.symbol, candles.timeframe
    ot, ct, o, h, lo, c, v = (candles.open_time, candles.close_time, candles.open, candles.high, candles.low,
                              candles.closes, candles.volume)
    on_candle, atr = strategy.on_candle, book.atr
    every, report = _ticker(progress, n)
    for start in range(0, n, every):
        for i in range(start, min(start + every, n)):
            candle = CandleView(exchange, symbol, timeframe, ot[i], ct[i], o[i], h[i], lo[i], c[i], v[i])
            if book.pending or book.open_orders or book.protection:
                book.trade_bar(i, candle)
            if atr is not None:
                book.atr_value = atr.update(h[i], lo[i], c[i])
            intents = on_candle(candle, None, book.position)  # type: ignore[arg-type]
            if intents:
                book.decide(i, candle, intents)
        report(start, n)


def step_series(
    changes: Sequence[tuple[int, float, float]], n: int, cash: float, closes: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Equity and position per bar from the (bar, cash, position) after each bar that had fills."""
    count = len(changes)
    return step_arrays(np.fromiter((change[0] for change in changes), dtype=np.int64, count=count),
                       np.fromiter((change[1] for change in changes), dtype=np.float64, count=count),
                       np.fromiter((change[2] for change in changes), dtype=np.float64, count=count),
                       cash, closes)


def step_arrays(
    bars: np.ndarray, cash_after: np.ndarray, held_after: np.ndarray, cash: float, closes: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """`step_series` from arrays: the bars with fills (ascending), the cash and position after each."""
    n = len(closes)
    if not len(bars):
        return np.full(n, cash), np.zeros(n)
    which = np.searchsorted(bars, np.arange(n), side="right") - 1  # the last change at or before each bar
    before = which < 0
    which[before] = 0
    cash_per_bar = np.where(before, cash, cash_after[which])
    held = np.where(before, 0.0, held_after[which])
    return cash_per_bar + held * closes, held


# ---- the entry point ------------------------------------------------------------------------------


def run_backtest(
    candles: pd.DataFrame,
    strategy: Strategy | str,
    *,
    symbol: str,
    cash: Decimal,
    fee: Decimal,
    slippage_bps: Decimal = ZERO,
    progress: ProgressFn | None = None,
    params: Mapping[str, object] | None = None,
    mode: Mode = "auto",
    risk: RiskConfig | None = None,
    market: Market | None = None,
    max_participation: Decimal = Decimal(1),
    impact_bps: Decimal = ZERO,
    timeframe: str | None = None,
    exchange: str = EXCHANGE,
) -> BacktestResult:
    """Backtest `strategy` on `candles` (columns open_time in UTC ms, open, high, low, close, volume).

    `strategy` is a registry name (with `params`) or an instance (a fresh copy with its parameters
    runs). `fee` is the rate per side (maker and taker), `slippage_bps` moves every market fill
    against the order. `max_participation` caps a candle's volume our orders take (the rest waits
    for later candles); `impact_bps` adds slippage per unit of participation, as the paper venue
    does (default 0 here; the live paper agents use `PaperConfig`'s 100 — pass it to reproduce
    them; all-in orders are sized without it, so with it they may spend slightly more than the
    cash). `market` gives tick and step sizes and minimums (default: the paper agents' generic
    rules). `mode`: see the module docstring; `auto` takes `vector` when the
    strategy has a vectorised form and no risk config is given, else `lean`. `progress(done,
    total)` is called about 200 times.
    """
    from backtest import vector  # noqa: PLC0415 - vector builds on this module's helpers

    if not (isinstance(cash, Decimal) and cash.is_finite() and cash > 0):
        raise BacktestError(f"cash must be a positive Decimal, got {cash!r}")
    if not (isinstance(fee, Decimal) and 0 <= fee < 1):
        raise BacktestError(f"fee must be a Decimal rate in [0, 1), got {fee!r}")
    if not (isinstance(slippage_bps, Decimal) and slippage_bps >= 0):
        raise BacktestError(f"slippage_bps must be a Decimal >= 0, got {slippage_bps!r}")
    try:
        split_symbol(symbol)
    except ValueError as exc:
        raise BacktestError(str(exc)) from None
    bars = Candles(candles, timeframe)
    fresh = make_strategy(strategy, params)
    market = market or default_market(symbol, exchange)
    if market.symbol != symbol or market.exchange != exchange:
        raise BacktestError(f"market rules are for {market.exchange}:{market.symbol}, "
                            f"not {exchange}:{symbol}")
    common = {"exchange": exchange, "symbol": symbol, "market": market, "cash": cash, "fee": fee,
              "slippage_bps": slippage_bps, "max_participation": max_participation}
    n = len(bars)
    if mode in ("auto", "vector"):
        if risk is None and not impact_bps and vector.signals_for(fresh) is not None:
            outcome = vector.run_vector(fresh, bars, progress=progress, **common)  # type: ignore[arg-type]
            if outcome is not None:
                return _result(fresh, bars, outcome, symbol=symbol, cash=cash, fee=fee,
                               slippage_bps=slippage_bps, engine="vector")
        elif mode == "vector":
            why = ("a risk config is given" if risk is not None else "impact_bps is not 0" if impact_bps
                   else f"{fresh.name} has no vectorised form")
            raise BacktestError(f"the vector engine cannot run this backtest: {why}")
    book = Book(risk=risk, impact_bps=impact_bps, **common)  # type: ignore[arg-type]
    engine = "event" if mode == "event" else "lean"
    if engine == "event":
        equity, position = _run_event(book, fresh, bars, progress)
    else:
        _run_lean(book, fresh, bars, progress)
        equity, position = step_series(book.changes, n, float(cash), bars.close_array)
    if progress is not None:
        progress(n, n)
    last = Decimal(repr(bars.closes[-1]))
    book.ledger.mark(symbol, last)
    outcome = Outcome(
        final_equity=book.ledger.equity(book.quote), fees_paid=book.ledger.fees_paid(book.quote),
        trades=book.trades.trades(last), equity=equity, position=position, events=tuple(book.events),
        decisions=tuple(book.decisions),
    )
    return _result(fresh, bars, outcome, symbol=symbol, cash=cash, fee=fee, slippage_bps=slippage_bps,
                   engine=engine)


def _result(strategy: Strategy, bars: Candles, outcome: Outcome, *, symbol: str, cash: Decimal, fee: Decimal,
            slippage_bps: Decimal, engine: str) -> BacktestResult:
    index = bars.index
    return BacktestResult(
        symbol=symbol, strategy=strategy.name, params=strategy.params.model_dump(mode="json"),
        starting_cash=cash,
        final_equity=outcome.final_equity, fees_paid=outcome.fees_paid, trades=outcome.trades,
        equity=pd.Series(outcome.equity, index=index, name="equity"),
        position=pd.Series(outcome.position, index=index, name="position"),
        closes=pd.Series(bars.close_array, index=index, name="close"),
        fee=fee, slippage_bps=slippage_bps, engine=engine, order_events=outcome.events,
        risk_decisions=outcome.decisions,
    )
