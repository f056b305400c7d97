"""The Venue port: what the execution agent needs from any place that trades (paper, ccxt, web3).

Every method that changes something returns the order events it caused (`OrderUpdated`,
`OrderFilled`), which the caller persists and publishes; a venue never publishes by itself.
`now` is the event time of the command, so a paper venue stays deterministic and a real one
can stamp what it reports before the exchange answers with its own times.

Idempotency is part of the contract: placing an order whose client order id the venue already
knows sends nothing. It returns the changes the caller has not seen: none if this venue object
placed the order; the catch-up events (submitted, fills since) if a fresh object (after a
restart) finds the order only at the exchange, so nothing is lost (`fetch_order` tells more).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Protocol, runtime_checkable

from config.errors import DomainError
from execution.market import Market
from execution.order import Order
from topics.orders import OrderEvent


class UnknownOrderError(DomainError):
    """A command names a client order id the venue has never seen."""

    def __init__(self, exchange: str, client_order_id: str) -> None:
        super().__init__(
            f"{exchange} has no order {client_order_id}: check the id (fetch_open_orders lists the open ones)"
        )
        self.client_order_id = client_order_id


@runtime_checkable
class Venue(Protocol):
    """One exchange account (or wallet) that orders go to."""

    exchange: str

    def market(self, symbol: str) -> Market | None:
        """The trading rules of `symbol`, or None if the venue does not list it."""
        ...

    async def place(self, order: Order, *, now: int) -> list[OrderEvent]:
        """Send a `new` order: its `submitted` or `rejected` change (nothing if already placed)."""
        ...

    async def cancel(
        self, client_order_id: str, *, now: int, reason: str = "cancel requested"
    ) -> list[OrderEvent]:
        """Cancel the unfilled rest of an open order (nothing if it is already terminal)."""
        ...

    async def modify(
        self, client_order_id: str, *, now: int, quantity: Decimal | None = None,
        limit_price: Decimal | None = None, stop_price: Decimal | None = None,
    ) -> list[OrderEvent]:
        """Change an open order's quantity or prices; DomainError with reasons if refused."""
        ...

    async def fetch_order(self, client_order_id: str) -> Order | None:
        """The order as the venue knows it, or None if it never saw it."""
        ...

    async def fetch_open_orders(self, symbol: str | None = None) -> list[Order]:
        """Orders still open (submitted or partially filled), oldest first."""
        ...

    async def fetch_balances(self) -> dict[str, Decimal]:
        """Free plus locked amount of every asset the account holds, by asset."""
        ...
