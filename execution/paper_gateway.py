"""The paper venue: orders fill against the closed candles of the market stream, in event time.

The model, candle by candle (each `CandleClosed` is one step; prices are the candle's, rounded
to the market's tick):

* No look-ahead: an order placed at event time t can first fill on the first candle with
  `open_time >= t`, never on the candle it was decided on. Everything a candle causes is
  stamped with the candle's `close_time`, when the venue could know it.
* Market orders (and stop orders once triggered) take liquidity at the candle's open; a stop
  triggers when the candle trades through its stop price (buy: high >= stop, sell: low <= stop)
  and fills at the stop, or at the open if the candle gapped through it. A triggered
  stop_limit rests as a limit order from the next candle.
* Limit orders: on their first candle (or the first after an amendment) an order already
  marketable at the open (buy: open <= limit) takes liquidity at the open, never worse than its
  limit. Otherwise it rests and fills
  at its limit price as a maker once the candle trades through it (buy: low < limit; touching
  is not enough, the queue ahead of us would have been served first).
* Partial fills: all orders on one candle share at most `max_participation` of the candle's
  volume, in the order they were placed, rounded down to the step size; the rest waits for
  later candles (GTC), is cancelled (IOC) or, for FOK, nothing fills and the order is cancelled.
  IOC and FOK apply to the order's first active candle. An order with `expire_at` before a
  candle's close expires instead of trading on it.
* Slippage, on taker fills only: `slippage_bps + impact_bps x (fill quantity / candle volume)`
  moves the price against the order, rounded to the tick against the order, kept within the
  candle's high/low and the order's limit. Maker fills trade at their limit.
* Fees: `maker_fee_rate` or `taker_fee_rate` x price x quantity, in the quote asset, rounded up
  to `fee_quantum`.

The fill arithmetic is public (`candle_price`, `taker_price`, `fill_fee`): the backtest sizes
all-in orders and books its vectorised fills with the venue's own functions.

The venue keeps its own ledger of the account (`balances`), fed with its fills. It does not
check balances before accepting an order: sizing is the risk engine's job.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from decimal import ROUND_CEILING, Context, Decimal, localcontext

from pydantic import BaseModel, ConfigDict, Field

from config.errors import DomainError
from execution import order as orders
from execution.ledger import STREAM_IDS_KEPT, Ledger
from execution.market import Market
from execution.order import Order, OrderRequest, validate_request
from execution.venue import UnknownOrderError
from topics.market import CandleClosed
from topics.orders import Liquidity, OrderEvent, OrderFilled

ZERO = Decimal(0)
FEE_QUANTUM = Decimal("0.00000001")  # fees round up to it unless configured otherwise
# Ended orders a venue can still be asked about (`fetch_order`, `cancel`); older ones are in Postgres.
# Small, because the execution agent pickles its venues after every order it sends: 10,000 cost
# 72 ms and 2.3 MB per save, which capped the agent at ~14 orders a second.
CLOSED_ORDERS_KEPT = 200
# Candles whose volume orders took, newest kept: a late order (`catch_up`) shares what they left.
TAKEN_KEPT = 200
_BPS = Decimal(10_000)
_MATH = Context(prec=60)  # fixed, so results never depend on the caller's decimal context


class PaperConfig(BaseModel):
    """How the paper venue fills, slips and charges."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    maker_fee_rate: Decimal = Field(Decimal("0.001"), ge=0, lt=1, description="fraction of notional")
    taker_fee_rate: Decimal = Field(Decimal("0.001"), ge=0, lt=1, description="fraction of notional")
    slippage_bps: Decimal = Field(Decimal("2"), ge=0, description="fixed slippage of every taker fill")
    impact_bps: Decimal = Field(
        Decimal("100"), ge=0,
        description="extra slippage per unit of participation: taking 10% of a candle's volume adds a tenth",
    )
    max_participation: Decimal = Field(
        Decimal("0.1"), gt=0, le=1, description="share of a candle's volume our orders may take"
    )
    fee_quantum: Decimal = Field(FEE_QUANTUM, gt=0, description="fees round up to this")


@dataclass(frozen=True, slots=True)
class _Resting:
    """The venue's view of an open order: the order plus when it may trade and how far it got."""

    order: Order
    placed_at: int
    candles_seen: int = 0  # eligible candles so far
    # The eligible candle (1 = the first) from which it trades; IOC and FOK judge on that one.
    # None: a stop order whose stop has not traded yet.
    active_since: int | None = 1


@dataclass(frozen=True, slots=True)
class _Bar:
    open: Decimal
    high: Decimal
    low: Decimal
    volume: Decimal


class PaperVenue:
    """A simulated exchange account; implements `execution.venue.Venue`. Pure and deterministic."""

    def __init__(
        self,
        exchange: str,
        markets: Iterable[Market],
        config: PaperConfig | None = None,
        *,
        balances: Mapping[str, Decimal] | None = None,
    ) -> None:
        self.exchange = exchange
        self.config = config or PaperConfig()
        self._markets = {m.symbol: m for m in markets if m.exchange == exchange}
        self._orders: dict[str, Order] = {}  # every order ever placed, by client order id
        self._resting: dict[str, _Resting] = {}  # the open ones, in placement order
        self._ended: dict[str, None] = {}  # ended ones still in `_orders`, oldest first (see `_closed`)
        self._last_close: dict[str, Decimal] = {}  # checks a market order's notional, as venues do
        self._taken: dict[tuple[str, int], Decimal] = {}  # (symbol, open time) -> what orders took of it
        self.ledger = Ledger(remember=STREAM_IDS_KEPT)  # it books its own fills, each once
        for asset, amount in sorted((balances or {}).items()):
            self.ledger.deposit(asset, amount, transfer_id=f"paper-initial-{asset}")

    def market(self, symbol: str) -> Market | None:
        return self._markets.get(symbol)

    async def place(self, order: Order, *, now: int) -> list[OrderEvent]:
        if order.client_order_id in self._orders:
            return []
        if order.status != "new":
            raise DomainError(
                f"order {order.client_order_id} is {order.status}: only a new order can be placed"
            )
        request = OrderRequest(
            decision_id=order.decision_id, exchange=order.exchange, symbol=order.symbol, side=order.side,
            order_type=order.order_type, quantity=order.quantity, limit_price=order.limit_price,
            stop_price=order.stop_price, time_in_force=order.time_in_force, expire_at=order.expire_at,
            reference_price=self._last_close.get(order.symbol),
        )
        reasons = [f"sent to {self.exchange}"] if order.exchange != self.exchange else []
        reasons = reasons or validate_request(request, self.market(order.symbol), now=now)
        if reasons:
            placed, events = orders.reject(order, now=now, reasons=reasons)
        else:
            venue_id = "paper-" + order.client_order_id.removeprefix("cq-")
            placed, events = orders.submit(order, now=now, venue_order_id=venue_id)
            waits_for_stop = placed.order_type in ("stop", "stop_limit")
            self._resting[placed.client_order_id] = _Resting(
                placed, placed_at=now, active_since=None if waits_for_stop else 1
            )
        self._orders[placed.client_order_id] = placed
        if not placed.is_open:
            self._closed(placed.client_order_id)
        return events

    async def cancel(
        self, client_order_id: str, *, now: int, reason: str = "cancel requested"
    ) -> list[OrderEvent]:
        current = self._known(client_order_id)
        if not current.is_open:
            return []
        return self._close(client_order_id, *orders.cancel(current, now=now, reason=reason))

    async def modify(
        self, client_order_id: str, *, now: int, quantity: Decimal | None = None,
        limit_price: Decimal | None = None, stop_price: Decimal | None = None,
    ) -> list[OrderEvent]:
        current = self._known(client_order_id)
        market = self.market(current.symbol)
        if market is None:  # cannot happen for a placed order; a clear error if it ever does
            raise DomainError(f"{current.symbol} is not listed on {self.exchange}")
        changed, events = orders.amend(
            current, market, now=now, quantity=quantity, limit_price=limit_price, stop_price=stop_price
        )
        self._orders[client_order_id] = changed
        resting = self._resting[client_order_id]
        # A changed order arrives anew: on its next candle it may take liquidity at the open.
        fresh = None if resting.active_since is None else resting.candles_seen + 1
        self._resting[client_order_id] = replace(resting, order=changed, active_since=fresh)
        return events

    async def fetch_order(self, client_order_id: str) -> Order | None:
        return self._orders.get(client_order_id)

    async def fetch_open_orders(self, symbol: str | None = None) -> list[Order]:
        return [r.order for r in self._resting.values() if symbol is None or r.order.symbol == symbol]

    async def fetch_balances(self) -> dict[str, Decimal]:
        return self.ledger.balances()

    def on_candle(self, candle: CandleClosed) -> list[OrderEvent]:
        """Trade the open orders of the candle's instrument against it; the events it caused."""
        market = self.market(candle.symbol)
        if candle.exchange != self.exchange or market is None:
            return []
        events = self._trade(candle, market, list(self._resting.items()))
        self.ledger.mark_candle(candle)
        self._last_close[candle.symbol] = candle_price(market, candle.close)
        return events

    def catch_up(self, client_order_id: str, candles: Iterable[CandleClosed]) -> list[OrderEvent]:
        """Trade an order placed late against candles the venue has already traded.

        In event time an order placed at t trades on the first candle that opens at or after t.
        When candles arrive faster than decisions (a replay at full speed), that candle may have
        gone by before the order came; given the candles since (oldest first), this trades the
        order against them as if it had been resting when they came, so the fill does not depend
        on how fast the agents ran. It takes only what the orders that traded on a candle left of
        its participation limit (remembered for the newest `TAKEN_KEPT` candles that traded; on an
        older one the late order has the whole limit to itself).
        """
        events: list[OrderEvent] = []
        for candle in candles:
            resting = self._resting.get(client_order_id)
            if resting is None:
                break  # filled, cancelled or expired
            market = self.market(candle.symbol)
            if candle.exchange == self.exchange and market is not None:
                events += self._trade(candle, market, [(client_order_id, resting)])
        return events

    def _trade(
        self, candle: CandleClosed, market: Market, candidates: list[tuple[str, _Resting]]
    ) -> list[OrderEvent]:
        """Trade the candidates of the candle's instrument that were placed before it opened, first
        placed first served, within the share of its volume orders may take."""
        bar = _Bar(
            open=candle_price(market, candle.open),
            high=candle_price(market, candle.high),
            low=candle_price(market, candle.low),
            volume=Decimal(repr(candle.volume)),
        )
        key = (candle.symbol, candle.open_time)
        with localcontext(_MATH):
            limit = market.floor_quantity(bar.volume * self.config.max_participation)
        available = limit - self._taken.get(key, ZERO)
        events: list[OrderEvent] = []
        for cid, resting in candidates:
            if resting.order.symbol != candle.symbol or resting.placed_at > candle.open_time:
                continue
            taken, step_events = self._step(resting, bar, available, market, candle)
            available -= taken
            events += step_events
            if not self._orders[cid].is_open:
                self._closed(cid)
        if available < limit:
            self._taken[key] = limit - available
            while len(self._taken) > TAKEN_KEPT:
                del self._taken[next(iter(self._taken))]
        return events

    def _step(
        self, resting: _Resting, bar: _Bar, available: Decimal, market: Market, candle: CandleClosed
    ) -> tuple[Decimal, list[OrderEvent]]:
        """One eligible candle for one open order: (quantity it took, events)."""
        order, now = resting.order, candle.close_time
        cid = order.client_order_id
        if order.expire_at is not None and order.expire_at < candle.close_time:
            expired = orders.expire(order, now=now, reason=f"expired at {order.expire_at}")
            return ZERO, self._close(cid, *expired)
        seen = resting.candles_seen + 1
        active_since, triggered_now = resting.active_since, False
        if active_since is None:
            if not _stop_trades(order, bar):
                self._resting[cid] = replace(resting, candles_seen=seen)
                return ZERO, []
            triggered_now = True
            active_since = seen if order.order_type == "stop" else seen + 1  # stop_limit rests from the next
        resting = replace(resting, candles_seen=seen, active_since=active_since)
        self._resting[cid] = resting
        if seen < active_since:
            return ZERO, []
        first = seen == active_since
        priced = self._price(order, bar, first=first, triggered_now=triggered_now)
        quantity = min(order.remaining, available) if priced is not None and bar.volume > 0 else ZERO
        if order.time_in_force == "FOK" and first and quantity < order.remaining:
            why = f"FOK: only {quantity} of {order.remaining} could fill on the first candle"
            return ZERO, self._close(cid, *orders.cancel(order, now=now, reason=why))
        events: list[OrderEvent] = []
        taken = ZERO
        if priced is not None and quantity > 0:
            base_price, liquidity = priced
            price = self._slipped(order, base_price, liquidity, quantity, bar=bar, market=market)
            rate = self.config.maker_fee_rate if liquidity == "maker" else self.config.taker_fee_rate
            fee = fill_fee(price, quantity, rate, self.config.fee_quantum)
            order, events = orders.fill(
                order, now=now, price=price, quantity=quantity, fee=fee, fee_asset=market.quote,
                liquidity=liquidity,
            )
            for event in events:
                if isinstance(event, OrderFilled):
                    self.ledger.apply(event)
            self._orders[cid] = order
            self._resting[cid] = replace(resting, order=order)
            taken = quantity
        if order.time_in_force in ("IOC", "FOK") and first and order.is_open:
            why = f"IOC: {order.remaining} unfilled on the first candle"
            events += self._close(cid, *orders.cancel(order, now=now, reason=why))
        return taken, events

    @staticmethod
    def _price(
        order: Order, bar: _Bar, *, first: bool, triggered_now: bool
    ) -> tuple[Decimal, Liquidity] | None:
        """The price before slippage this candle offers the order, and which side of the book it is."""
        buy = order.side == "buy"
        if order.order_type == "stop" and triggered_now:  # at the stop, or the open if it gapped through
            assert order.stop_price is not None
            return (max(order.stop_price, bar.open) if buy else min(order.stop_price, bar.open)), "taker"
        if order.order_type in ("market", "stop"):
            return bar.open, "taker"
        limit = order.limit_price
        assert limit is not None
        if first and (bar.open <= limit if buy else bar.open >= limit):
            return bar.open, "taker"
        if (bar.low < limit) if buy else (bar.high > limit):
            return limit, "maker"
        return None

    def _slipped(
        self, order: Order, price: Decimal, liquidity: Liquidity, quantity: Decimal, *, bar: _Bar,
        market: Market,
    ) -> Decimal:
        if liquidity == "maker":
            return price
        with localcontext(_MATH):
            bps = self.config.slippage_bps + self.config.impact_bps * quantity / bar.volume
        return taker_price(market, order.side, price, bps, high=bar.high, low=bar.low,
                           limit=order.limit_price)

    def _closed(self, client_order_id: str) -> None:
        """An order's life at the venue ended: it stops resting, and of the ended orders only the
        newest `CLOSED_ORDERS_KEPT` stay queryable (a venue that runs for months would otherwise
        keep, and its owner save, every order it ever saw)."""
        self._resting.pop(client_order_id, None)
        self._ended[client_order_id] = None
        while len(self._ended) > CLOSED_ORDERS_KEPT:
            oldest = next(iter(self._ended))
            del self._ended[oldest], self._orders[oldest]

    def __setstate__(self, state: dict[str, object]) -> None:
        """Restore a pickle, also one made before `_ended` or `_taken` existed."""
        self.__dict__.update({"_taken": {}} | state)
        if "_ended" not in state:
            self._ended = {cid: None for cid, order in self._orders.items() if not order.is_open}

    def _known(self, client_order_id: str) -> Order:
        try:
            return self._orders[client_order_id]
        except KeyError:
            raise UnknownOrderError(self.exchange, client_order_id) from None

    def _close(self, client_order_id: str, order: Order, events: list[OrderEvent]) -> list[OrderEvent]:
        """Record a change that ends the order's life at the venue."""
        self._orders[client_order_id] = order
        self._closed(client_order_id)
        return events


def _stop_trades(order: Order, bar: _Bar) -> bool:
    """The candle traded at or through the order's stop price."""
    assert order.stop_price is not None
    return bar.high >= order.stop_price if order.side == "buy" else bar.low <= order.stop_price


def candle_price(market: Market, value: float) -> Decimal:
    """A float candle price made exact (its shortest repr) and put on the market's tick."""
    return market.round_price(Decimal(repr(value)))


def taker_price(
    market: Market, side: str, price: Decimal, slippage_bps: Decimal, *, high: Decimal | None = None,
    low: Decimal | None = None, limit: Decimal | None = None,
) -> Decimal:
    """The price a taker fill of `side` gets where the candle offers `price` (on the tick).

    `price` moves against the order by `slippage_bps`, is rounded to the tick against the order,
    then kept within the candle (a buy pays at most its `high`, a sell gets at least its `low`)
    and the order's `limit`, each when given. Without `high` (buy) or `low` (sell): the worst price
    the slippage allows, which is what sizing an order before its candle may know.
    """
    with localcontext(_MATH):
        if side == "buy":
            slipped = market.ceil_price(price * (1 + slippage_bps / _BPS))
            if high is not None:
                slipped = min(slipped, high)
            return slipped if limit is None else min(slipped, limit)
        slipped = market.floor_price(price * (1 - slippage_bps / _BPS))
        if low is not None:
            slipped = max(slipped, low)
        return slipped if limit is None else max(slipped, limit)


def fill_fee(price: Decimal, quantity: Decimal, rate: Decimal, quantum: Decimal = FEE_QUANTUM) -> Decimal:
    """A fill's fee: `rate x price x quantity` in the quote asset, rounded up to `quantum`."""
    with localcontext(_MATH):
        return (price * quantity * rate).quantize(quantum, rounding=ROUND_CEILING)
