"""How commands show numbers: for reading, never for the books (which keep every digit)."""

from __future__ import annotations

from decimal import Decimal


def money(value: Decimal | float | str | None) -> str:
    """An amount to the cent with thousands separators; "-" for none."""
    if value is None:
        return "-"
    return f"{value if isinstance(value, Decimal) else Decimal(str(value)):,.2f}"


def plain(value: Decimal | str | None) -> str:
    """A price or quantity with every digit it has and no exponent or trailing zeros (0E-8 is 0)."""
    return "-" if value is None else f"{Decimal(value).normalize():f}"
