"""The fill arithmetic of a market order at a candle's open, as the paper venue does it, in one place.

`execution.paper_gateway.PaperVenue` fills a market order on its first eligible candle at the
open rounded to the tick, moved against the order by `slippage_bps` (rounded to the tick against
the order, kept within the candle's high/low), and charges `fee_rate x price x quantity` rounded
up to the fee quantum. The backtest uses the venue itself on its event paths; these functions
are that arithmetic for what the venue cannot do for it:

- sizing an all-in order at the open it fills at (a market order for "all my cash", the way a
  venue's quote-amount market order works), so the order never costs more than the cash;
- the vectorised path, which books round trips without building orders.

Both paths are tested against the venue's own fills (tests/backtest), so a change to the venue's
formula that is not made here fails a test. The backtest configures the venue with no volume
impact (`impact_bps` 0), so the price does not depend on the quantity.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, Context, Decimal, localcontext

from execution.market import Market

BPS = Decimal(10_000)
FEE_QUANTUM = Decimal("0.00000001")  # PaperConfig's default: fees round up to it
_MATH = Context(prec=60)  # the venue's context: results never depend on the caller's


def taker_price(
    market: Market, side: str, open_: float, slippage_bps: Decimal, *, high: float | None = None,
    low: float | None = None,
) -> Decimal:
    """The price a market order of `side` fills at on a candle that opened at `open_`.

    Without `high` (buy) or `low` (sell) the slipped price is not capped by the candle's range:
    the worst price the order can get, which is what sizing at the open may know.
    """
    with localcontext(_MATH):
        price = market.round_price(Decimal(repr(open_)))
        if not slippage_bps:
            return price
        if side == "buy":
            slipped = market.ceil_price(price * (1 + slippage_bps / BPS))
            return slipped if high is None else min(slipped, market.round_price(Decimal(repr(high))))
        slipped = market.floor_price(price * (1 - slippage_bps / BPS))
        return slipped if low is None else max(slipped, market.round_price(Decimal(repr(low))))


def fee(price: Decimal, quantity: Decimal, rate: Decimal, quantum: Decimal = FEE_QUANTUM) -> Decimal:
    """`rate x price x quantity`, rounded up to `quantum` (in the quote asset)."""
    with localcontext(_MATH):
        return (price * quantity * rate).quantize(quantum, rounding=ROUND_CEILING)


def all_in_quantity(
    market: Market, budget: Decimal, price: Decimal, rate: Decimal, quantum: Decimal = FEE_QUANTUM
) -> Decimal:
    """The most base units, on the step, that `budget` buys at `price` with the fee on top."""
    if budget <= 0:
        return Decimal(0)
    with localcontext(_MATH):
        quantity = market.floor_quantity(budget / (price * (1 + rate)))
        while quantity > 0 and quantity * price + fee(price, quantity, rate, quantum) > budget:
            quantity -= market.step_size  # the fee's rounding up can cost one step, never more than a few
    return quantity
