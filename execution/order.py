"""The order: its request, its state machine, and the events each change produces.

    new -> submitted -> partially_filled -> filled
    new -> rejected          submitted | partially_filled -> cancelled | expired
                             submitted -> rejected | filled

Commands are functions `(order, ...) -> (order', events)`: nothing changes without an event, so
every change can be persisted and published, and an order is rebuilt from its latest
`OrderUpdated` (`Order.from_event`). A change the machine does not allow raises
`IllegalTransitionError` naming both states; terminal states (filled, cancelled, rejected, expired)
absorb.

The client order id is a hash of the decision id (and the leg of a laddered decision): the same
decision always names the same order, so a retried, replayed or duplicated command is
recognised by the venue and by the order store instead of placing a second order.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from config.errors import DomainError
from execution.market import Market
from topics.orders import (
    Liquidity,
    OrderEvent,
    OrderFilled,
    OrderStatus,
    OrderType,
    OrderUpdated,
    Side,
    TimeInForce,
)

TERMINAL: frozenset[OrderStatus] = frozenset({"filled", "cancelled", "rejected", "expired"})
OPEN: frozenset[OrderStatus] = frozenset({"submitted", "partially_filled"})
TRANSITIONS: dict[OrderStatus, frozenset[OrderStatus]] = {
    "new": frozenset({"submitted", "rejected"}),
    "submitted": frozenset({"partially_filled", "filled", "cancelled", "rejected", "expired"}),
    "partially_filled": frozenset({"partially_filled", "filled", "cancelled", "expired"}),
    "filled": frozenset(),
    "cancelled": frozenset(),
    "rejected": frozenset(),
    "expired": frozenset(),
}
_PRICED: dict[OrderType, tuple[bool, bool]] = {  # (needs a limit price, needs a stop price)
    "market": (False, False),
    "limit": (True, False),
    "stop": (False, True),
    "stop_limit": (True, True),
}

Step = tuple["Order", list[OrderEvent]]


class IllegalTransitionError(DomainError):
    """An order was asked to go where its state machine does not lead."""

    def __init__(self, client_order_id: str, from_status: OrderStatus, to_status: OrderStatus) -> None:
        super().__init__(f"order {client_order_id}: illegal transition {from_status} -> {to_status}")
        self.from_status = from_status
        self.to_status = to_status


def client_order_id(decision_id: str, leg: int = 0) -> str:
    """`cq-` + 24 hex digits of sha256(decision id[#leg]): 27 characters every venue accepts."""
    if not decision_id:
        raise ValueError("a client order id needs a decision id")
    if leg < 0:
        raise ValueError(f"leg must be 0 or more, got {leg}")
    material = decision_id if leg == 0 else f"{decision_id}#{leg}"
    return "cq-" + hashlib.sha256(material.encode()).hexdigest()[:24]


class OrderRequest(BaseModel):
    """What a risk decision asks the venue to do. Amounts are not checked here but in
    `validate_request`, so a bad one becomes a rejected order with reasons instead of an error."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    decision_id: str = Field(min_length=1)
    leg: int = Field(0, ge=0, description="index of the order within a laddered decision")
    exchange: str = Field(min_length=1)
    symbol: str = Field(min_length=1)
    side: Side
    order_type: OrderType
    quantity: Annotated[Decimal, Field(allow_inf_nan=True)]
    limit_price: Annotated[Decimal, Field(allow_inf_nan=True)] | None = None
    stop_price: Annotated[Decimal, Field(allow_inf_nan=True)] | None = None
    time_in_force: TimeInForce = "GTC"
    expire_at: int | None = Field(None, ge=0, description="UTC ms; the rest expires after it")
    reference_price: Annotated[Decimal, Field(allow_inf_nan=True)] | None = Field(
        None, description="price the decision saw: checks a market order's notional"
    )


def validate_request(request: OrderRequest, market: Market | None, *, now: int) -> list[str]:
    """Every reason the venue would refuse `request` (empty: it is acceptable)."""
    if market is None:
        return [f"unknown symbol {request.symbol} on {request.exchange}"]
    reasons: list[str] = []
    quantity_ok = _check_amount("quantity", request.quantity, reasons)
    if quantity_ok:
        if request.quantity < market.min_quantity:
            reasons.append(f"quantity {request.quantity} is below the minimum {market.min_quantity}")
        if not market.on_step(request.quantity):
            reasons.append(f"quantity {request.quantity} is finer than the step size {market.step_size}")
    needs_limit, needs_stop = _PRICED[request.order_type]
    prices_ok = _check_price(
        request, "limit_price", request.limit_price, needed=needs_limit, market=market, reasons=reasons
    )
    prices_ok &= _check_price(
        request, "stop_price", request.stop_price, needed=needs_stop, market=market, reasons=reasons
    )
    reference = request.limit_price or request.stop_price or request.reference_price
    if quantity_ok and prices_ok and reference is not None and reference.is_finite() and reference > 0:
        notional = request.quantity * reference
        if notional < market.min_notional:
            reasons.append(f"notional {notional} is below the minimum {market.min_notional}")
    if request.expire_at is not None and request.expire_at <= now:
        reasons.append(f"expire_at {request.expire_at} is not after the order's time {now}")
    return reasons


def _check_price(
    request: OrderRequest, name: str, price: Decimal | None, *, needed: bool, market: Market,
    reasons: list[str],
) -> bool:
    if price is None:
        if needed:
            reasons.append(f"a {request.order_type} order needs a {name}")
        return not needed
    if not needed:
        reasons.append(f"a {request.order_type} order takes no {name}")
        return False
    if not _check_amount(name, price, reasons):
        return False
    if not market.on_tick(price):
        reasons.append(f"{name} {price} is finer than the tick size {market.tick_size}")
    return True


def _check_amount(name: str, value: Decimal, reasons: list[str]) -> bool:
    if not value.is_finite():
        reasons.append(f"{name} must be a finite number, got {value}")
        return False
    if value <= 0:
        reasons.append(f"{name} must be positive, got {value}")
        return False
    return True


@dataclass(frozen=True, slots=True)
class Order:
    """One order as this system knows it. Change it only through the command functions below."""

    client_order_id: str
    decision_id: str
    exchange: str
    symbol: str
    side: Side
    order_type: OrderType
    time_in_force: TimeInForce
    quantity: Decimal
    limit_price: Decimal | None
    stop_price: Decimal | None
    expire_at: int | None
    status: OrderStatus
    filled_quantity: Decimal = Decimal(0)
    filled_notional: Decimal = Decimal(0)
    venue_order_id: str | None = None
    seq: int = 0
    ts_event: int = 0

    @property
    def is_open(self) -> bool:
        """Resting at the venue: it can still fill, be cancelled or expire."""
        return self.status in OPEN

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL

    @property
    def remaining(self) -> Decimal:
        return self.quantity - self.filled_quantity

    def average_price(self, places: int = 8) -> Decimal | None:
        """Volume-weighted fill price rounded to `places` (None before the first fill)."""
        if self.filled_quantity == 0:
            return None
        return (self.filled_notional / self.filled_quantity).quantize(Decimal(1).scaleb(-places))

    def event(self, previous: OrderStatus | None, reasons: list[str] | None = None) -> OrderUpdated:
        """The `OrderUpdated` that says this order is now as it is."""
        return OrderUpdated(
            client_order_id=self.client_order_id, decision_id=self.decision_id, exchange=self.exchange,
            symbol=self.symbol, side=self.side, order_type=self.order_type,
            time_in_force=self.time_in_force, quantity=self.quantity, limit_price=self.limit_price,
            stop_price=self.stop_price, expire_at=self.expire_at, status=self.status,
            previous_status=previous, filled_quantity=self.filled_quantity,
            filled_notional=self.filled_notional, venue_order_id=self.venue_order_id, seq=self.seq,
            ts_event=self.ts_event, reasons=reasons or [],
        )

    @classmethod
    def from_event(cls, event: OrderUpdated) -> Order:
        """The order as its latest `OrderUpdated` describes it."""
        return cls(
            client_order_id=event.client_order_id, decision_id=event.decision_id, exchange=event.exchange,
            symbol=event.symbol, side=event.side, order_type=event.order_type,
            time_in_force=event.time_in_force, quantity=event.quantity, limit_price=event.limit_price,
            stop_price=event.stop_price, expire_at=event.expire_at, status=event.status,
            filled_quantity=event.filled_quantity, filled_notional=event.filled_notional,
            venue_order_id=event.venue_order_id, seq=event.seq, ts_event=event.ts_event,
        )


def create_order(request: OrderRequest, market: Market | None, *, now: int) -> Step:
    """A new order for `request`, or a rejected one with the reasons if the venue would refuse it."""
    order = Order(
        client_order_id=client_order_id(request.decision_id, request.leg),
        decision_id=request.decision_id, exchange=request.exchange, symbol=request.symbol,
        side=request.side, order_type=request.order_type, time_in_force=request.time_in_force,
        quantity=request.quantity, limit_price=request.limit_price, stop_price=request.stop_price,
        expire_at=request.expire_at, status="new", ts_event=now,
    )
    events: list[OrderEvent] = [order.event(None)]
    reasons = validate_request(request, market, now=now)
    if reasons:
        order, rejected = reject(order, now=now, reasons=reasons)
        events += rejected
    return order, events


def transition(
    order: Order, to: OrderStatus, *, now: int, reasons: list[str] | None = None,
    venue_order_id: str | None = None,
) -> Step:
    """Move `order` to `to` if its state machine allows it; IllegalTransitionError otherwise."""
    if to not in TRANSITIONS[order.status]:
        raise IllegalTransitionError(order.client_order_id, order.status, to)
    changed = replace(
        order, status=to, seq=order.seq + 1, ts_event=max(now, order.ts_event),
        venue_order_id=venue_order_id or order.venue_order_id,
    )
    return changed, [changed.event(order.status, reasons)]


def submit(order: Order, *, now: int, venue_order_id: str | None = None) -> Step:
    """The venue accepted the order."""
    return transition(order, "submitted", now=now, venue_order_id=venue_order_id)


def reject(order: Order, *, now: int, reasons: list[str]) -> Step:
    """The order was refused (by our checks or the venue); `reasons` say why."""
    if not reasons:
        raise ValueError("a rejection needs at least one reason")
    return transition(order, "rejected", now=now, reasons=reasons)


def cancel(order: Order, *, now: int, reason: str) -> Step:
    """The unfilled rest of the order was cancelled."""
    return transition(order, "cancelled", now=now, reasons=[reason])


def expire(order: Order, *, now: int, reason: str) -> Step:
    """The unfilled rest of the order ran out of time."""
    return transition(order, "expired", now=now, reasons=[reason])


def fill(
    order: Order, *, now: int, price: Decimal, quantity: Decimal, fee: Decimal, fee_asset: str,
    liquidity: Liquidity, trade_id: str | None = None,
) -> Step:
    """Part or all of the order traded: `partially_filled` or `filled`, plus the `OrderFilled`.

    `trade_id` is the venue's; without one it is `<client_order_id>-<seq>`, stable on replay.

    A fill larger than what is left is a broken venue, not a bad request: DomainError, and the
    order is unchanged.
    """
    if not (quantity.is_finite() and quantity > 0 and price.is_finite() and price > 0):
        raise DomainError(f"order {order.client_order_id}: a fill needs a positive price and quantity")
    if not (fee.is_finite() and fee >= 0):
        raise DomainError(f"order {order.client_order_id}: a fill's fee must be zero or positive, got {fee}")
    if quantity > order.remaining:
        raise DomainError(
            f"order {order.client_order_id}: a fill of {quantity} exceeds the {order.remaining} left"
        )
    filled = order.filled_quantity + quantity
    status: OrderStatus = "filled" if filled == order.quantity else "partially_filled"
    if status not in TRANSITIONS[order.status]:
        raise IllegalTransitionError(order.client_order_id, order.status, status)
    changed = replace(
        order, status=status, filled_quantity=filled,
        filled_notional=order.filled_notional + price * quantity, seq=order.seq + 1,
        ts_event=max(now, order.ts_event),
    )
    report = OrderFilled(
        trade_id=trade_id or f"{order.client_order_id}-{changed.seq}", client_order_id=order.client_order_id,
        venue_order_id=order.venue_order_id, exchange=order.exchange, symbol=order.symbol, side=order.side,
        price=price, quantity=quantity, fee=fee, fee_asset=fee_asset, liquidity=liquidity,
        filled_quantity=filled, leaves_quantity=changed.remaining, ts_event=changed.ts_event,
    )
    return changed, [changed.event(order.status), report]


def amend(
    order: Order, market: Market, *, now: int, quantity: Decimal | None = None,
    limit_price: Decimal | None = None, stop_price: Decimal | None = None,
) -> Step:
    """Change an open order's quantity or prices in place; its status stays. DomainError with the
    reasons if the order is not open or the new values break the venue's rules."""
    if not order.is_open:
        raise DomainError(
            f"order {order.client_order_id} is {order.status}: only an open order can be amended"
        )
    request = OrderRequest(
        decision_id=order.decision_id, exchange=order.exchange, symbol=order.symbol, side=order.side,
        order_type=order.order_type, time_in_force=order.time_in_force,
        quantity=order.quantity if quantity is None else quantity,
        limit_price=order.limit_price if limit_price is None else limit_price,
        stop_price=order.stop_price if stop_price is None else stop_price,
    )
    reasons = validate_request(request, market, now=now)
    if request.quantity.is_finite() and request.quantity <= order.filled_quantity:
        reasons.append(f"quantity {request.quantity} is not above the {order.filled_quantity} already filled")
    if reasons:
        raise DomainError(f"order {order.client_order_id}: amendment refused: {'; '.join(reasons)}")
    changed = replace(
        order, quantity=request.quantity, limit_price=request.limit_price, stop_price=request.stop_price,
        seq=order.seq + 1, ts_event=max(now, order.ts_event),
    )
    what = [
        f"{name} {before} -> {after}"
        for name, before, after in (
            ("quantity", order.quantity, changed.quantity),
            ("limit_price", order.limit_price, changed.limit_price),
            ("stop_price", order.stop_price, changed.stop_price),
        )
        if before != after
    ]
    return changed, [changed.event(order.status, ["amended: " + ", ".join(what or ["nothing"])])]
