"""Order events: every state change of an order (`orders`) and every fill (`execution.reports`).

Money is `Decimal`, written as a JSON string ("0.00150000"), never a float. Both topics are
keyed by `exchange:symbol` (`topics.market.instrument_key`), so one instrument's order changes
and fills stay in order on one partition and a ledger consumer sees them in the order they
happened; an order's own history is in order because its key never changes.

`OrderUpdated` carries the whole order after the change, so a consumer needs only the latest
one to know an order; `seq` counts the changes (0 is the order's creation). The requested
amounts may be NaN or infinite on a rejected order: a bad request is kept as it came, with the
reasons it was refused, rather than lost.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, ClassVar, Literal

from pydantic import Field

from topics.events import Event, register_event

Side = Literal["buy", "sell"]
OrderType = Literal["market", "limit", "stop", "stop_limit"]
TimeInForce = Literal["GTC", "IOC", "FOK"]
OrderStatus = Literal["new", "submitted", "partially_filled", "filled", "cancelled", "rejected", "expired"]
Liquidity = Literal["maker", "taker"]

# What a request asked for, kept even when it is not a usable number (see the module docstring).
Requested = Annotated[Decimal, Field(allow_inf_nan=True)]

CLIENT_ORDER_ID_PATTERN = r"^[A-Za-z0-9_:.\-]{1,36}$"  # what Binance, Blofin and Crypto.com all accept


def split_symbol(symbol: str) -> tuple[str, str]:
    """(base, quote) of a ccxt unified symbol: `BTC/USDT` -> (BTC, USDT); `BTC/USDT:USDT` too."""
    base, sep, rest = symbol.partition("/")
    quote = rest.split(":", 1)[0]
    if not sep or not base or not quote:
        raise ValueError(f"{symbol!r} is not a ccxt symbol like BTC/USDT")
    return base, quote


@register_event
class OrderUpdated(Event):
    """An order was created or changed state (or was amended, or filled): the order after it."""

    TYPE: ClassVar[str] = "OrderUpdated"
    VERSION: ClassVar[int] = 1

    client_order_id: str = Field(
        pattern=CLIENT_ORDER_ID_PATTERN, description="derived from the decision id: the idempotency key"
    )
    decision_id: str = Field(min_length=1, description="the risk decision this order carries out")
    exchange: str = Field(min_length=1)
    symbol: str = Field(min_length=1, description="ccxt unified symbol, e.g. BTC/USDT")
    side: Side
    order_type: OrderType
    time_in_force: TimeInForce
    quantity: Requested = Field(description="base-asset amount asked for")
    limit_price: Requested | None = Field(None, description="limit and stop_limit orders")
    stop_price: Requested | None = Field(None, description="trigger price of stop and stop_limit orders")
    expire_at: int | None = Field(None, ge=0, description="UTC ms after which an unfilled rest expires")
    status: OrderStatus
    previous_status: OrderStatus | None = Field(None, description="None on the order's creation (seq 0)")
    filled_quantity: Decimal = Field(ge=0, description="base amount filled so far")
    filled_notional: Decimal = Field(ge=0, description="sum of price x quantity of the fills, quote asset")
    venue_order_id: str | None = Field(None, description="the venue's id, once submitted")
    seq: int = Field(ge=0, description="number of this change in the order's life; 0 = created")
    ts_event: int = Field(ge=0, description="event time of the change, UTC ms (the envelope's ts)")
    reasons: list[str] = Field(default_factory=list, description="why: rejection reasons, cancel cause")


@register_event
class OrderFilled(Event):
    """Part or all of an order traded: one execution, with its price, fee and liquidity side."""

    TYPE: ClassVar[str] = "OrderFilled"
    VERSION: ClassVar[int] = 1

    trade_id: str = Field(
        min_length=1, description="unique per fill: the venue's, or `<client_order_id>-<seq>` on paper"
    )
    client_order_id: str = Field(pattern=CLIENT_ORDER_ID_PATTERN)
    venue_order_id: str | None = None
    exchange: str = Field(min_length=1)
    symbol: str = Field(min_length=1)
    side: Side
    price: Decimal = Field(gt=0, description="quote per base unit")
    quantity: Decimal = Field(gt=0, description="base amount of this fill")
    fee: Decimal = Field(ge=0)
    fee_asset: str = Field(min_length=1)
    liquidity: Liquidity
    filled_quantity: Decimal = Field(gt=0, description="the order's base amount filled after this fill")
    leaves_quantity: Decimal = Field(ge=0, description="what is still open after this fill (0 if done)")
    ts_event: int = Field(ge=0, description="event time of the fill, UTC ms")


@register_event
class AccountTransfer(Event):
    """Money moved into (amount > 0) or out of (amount < 0) a trading account, as its ledger booked
    it: today a live venue's opening balances, one per asset, when the execution agent opens that
    account's books. With the account's fills (`execution.reports`, on `exchange`) it is everything
    a reader needs to keep the account's books, as the risk agent does to size live orders."""

    TYPE: ClassVar[str] = "AccountTransfer"
    VERSION: ClassVar[int] = 1

    account: str = Field(min_length=1, description="the ledger account, e.g. ccxt:binance")
    exchange: str = Field(min_length=1, description="the exchange whose trades this account books")
    transfer_id: str = Field(min_length=1, description="unique per transfer: a reader books each once")
    asset: str = Field(min_length=1)
    amount: Decimal = Field(description="signed: > 0 in, < 0 out")
    ts_event: int = Field(ge=0, description="event time of the transfer, UTC ms")


OrderEvent = OrderUpdated | OrderFilled
