"""A venue's trading rules for one instrument: tick size, step size and minimums.

Orders are checked against these before they reach a venue (`execution.order.validate_request`),
so a size the venue would refuse is rejected here with a reason. The rounding helpers let a
caller (the risk engine) make a size or price conform instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from topics.orders import split_symbol


@dataclass(frozen=True, slots=True)
class Market:
    """Trading rules of `symbol` on `exchange`. Sizes are in the base asset, prices in the quote."""

    exchange: str
    symbol: str
    tick_size: Decimal  # prices are whole multiples of it
    step_size: Decimal  # quantities are whole multiples of it
    min_quantity: Decimal
    min_notional: Decimal  # quantity x price, quote asset

    def __post_init__(self) -> None:
        split_symbol(self.symbol)  # a ValueError naming the symbol if it is not BASE/QUOTE
        for name in ("tick_size", "step_size"):
            value = getattr(self, name)
            if not value.is_finite() or value <= 0:
                raise ValueError(f"{self.symbol}: {name} must be a positive number, got {value}")
        for name in ("min_quantity", "min_notional"):
            value = getattr(self, name)
            if not value.is_finite() or value < 0:
                raise ValueError(f"{self.symbol}: {name} must be zero or positive, got {value}")

    @property
    def base(self) -> str:
        return split_symbol(self.symbol)[0]

    @property
    def quote(self) -> str:
        return split_symbol(self.symbol)[1]

    def floor_quantity(self, quantity: Decimal) -> Decimal:
        """`quantity` rounded down to the step size (never more than asked)."""
        return _to_multiple(quantity, self.step_size, ROUND_FLOOR)

    def floor_price(self, price: Decimal) -> Decimal:
        return _to_multiple(price, self.tick_size, ROUND_FLOOR)

    def ceil_price(self, price: Decimal) -> Decimal:
        return _to_multiple(price, self.tick_size, ROUND_CEILING)

    def round_price(self, price: Decimal) -> Decimal:
        """`price` at the nearest tick (half to even), e.g. a float candle price made exact."""
        return (price / self.tick_size).to_integral_value() * self.tick_size

    def on_step(self, quantity: Decimal) -> bool:
        return quantity % self.step_size == 0

    def on_tick(self, price: Decimal) -> bool:
        return price % self.tick_size == 0


def _to_multiple(value: Decimal, unit: Decimal, rounding: str) -> Decimal:
    return (value / unit).to_integral_value(rounding=rounding) * unit
