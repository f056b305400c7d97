"""All-in sizing: how much a market order for "all my cash" buys at the price it fills at.

A venue's market order for a quote amount never costs more than that amount. The backtest sizes
an all-in intent the same way, at the worst price the next open allows
(`execution.paper_gateway.taker_price` without the candle's range), with the venue's fee
(`fill_fee`) on top. The fill arithmetic itself is the paper venue's
(`execution.paper_gateway`), which the vectorised path also books its fills with; tests/backtest
compare both paths with the venue's own fills.
"""

from __future__ import annotations

from decimal import Context, Decimal, localcontext

from execution.market import Market
from execution.paper_gateway import FEE_QUANTUM, fill_fee

_MATH = Context(prec=60)  # the venue's context: results never depend on the caller's


def all_in_quantity(
    market: Market, budget: Decimal, price: Decimal, rate: Decimal, quantum: Decimal = FEE_QUANTUM
) -> Decimal:
    """The most base units, on the step, that `budget` buys at `price` with the fee on top."""
    if budget <= 0:
        return Decimal(0)
    with localcontext(_MATH):
        quantity = market.floor_quantity(budget / (price * (1 + rate)))
        while quantity > 0 and quantity * price + fill_fee(price, quantity, rate, quantum) > budget:
            quantity -= market.step_size  # the fee's rounding up can cost one step, never more than a few
    return quantity
