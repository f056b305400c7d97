"""What a backtest returns: its round-trip trades, the equity and position per bar, and the JSON report.

Money is Decimal (exact: the ledger's arithmetic); the per-bar series are float for plotting and
metrics. Times are UTC epoch milliseconds of events (a fill's time is the open time of the candle
whose open it filled at); the JSON report writes them as ISO 8601 UTC (`2022-01-03T05:00:00Z`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, overload

import pandas as pd


def iso_utc(ms: int | None) -> str | None:
    """UTC epoch milliseconds as ISO 8601 with a `Z` (milliseconds only when not whole seconds)."""
    if ms is None:
        return None
    moment = datetime.fromtimestamp(ms / 1000, tz=UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if ms % 1000:
        text += f".{ms % 1000:03d}"
    return text + "Z"


def _money(value: Decimal | None) -> str | None:
    """Exact, without trailing zeros, never in exponent form: every engine path writes the same text."""
    return None if value is None else f"{value.normalize():f}"


@dataclass(frozen=True)
class Trade:
    """One round trip: entry fill to exit fill (exit None while still open at the end of the data)."""

    symbol: str
    side: str  # "long" (or "short" later)
    entry_time: int  # UTC ms: event time of the entry fill
    exit_time: int | None
    entry_price: Decimal  # fill price including slippage
    exit_price: Decimal | None
    size: Decimal  # base units
    fees: Decimal  # entry + exit fees, quote currency
    pnl: Decimal  # net of fees (for an open trade: marked at the last close)

    @property
    def is_open(self) -> bool:
        return self.exit_time is None

    def to_json(self) -> dict[str, object]:
        """The trade as the JSON report writes it: ISO times, money as exact decimal strings."""
        return {
            "symbol": self.symbol, "side": self.side,
            "entry_time": iso_utc(self.entry_time), "exit_time": iso_utc(self.exit_time),
            "entry_price": _money(self.entry_price), "exit_price": _money(self.exit_price),
            "size": _money(self.size), "fees": _money(self.fees), "pnl": _money(self.pnl),
        }


class TradeLog(Sequence[Trade]):
    """A run's trades, built from its fill records on first use.

    The vectorised path books fills into arrays; making ten thousand `Trade`s of exact Decimals
    from them takes ~30 ms, which an optimiser run that reads only the equity should not pay (like
    vectorbt, whose trade records are computed when asked for). Reads as a list of `Trade`, equal to
    a list with the same trades; pickles as that list.
    """

    __slots__ = ("_build", "_count", "_trades")

    def __init__(self, build: Callable[[], list[Trade]], count: int) -> None:
        self._build: Callable[[], list[Trade]] | None = build
        self._count = count
        self._trades: list[Trade] | None = None

    def _all(self) -> list[Trade]:
        if self._trades is None:
            assert self._build is not None
            self._trades, self._build = self._build(), None
            assert len(self._trades) == self._count
        return self._trades

    def __len__(self) -> int:
        return self._count

    @overload
    def __getitem__(self, index: int) -> Trade: ...
    @overload
    def __getitem__(self, index: slice) -> list[Trade]: ...
    def __getitem__(self, index: int | slice) -> Trade | list[Trade]:
        return self._all()[index]

    def __iter__(self) -> Iterator[Trade]:
        return iter(self._all())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (list, TradeLog)):
            return self._all() == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment] - mutable-like, as a list

    def __repr__(self) -> str:
        return repr(self._all())

    def __reduce__(self) -> tuple[type[list[Trade]], tuple[list[Trade]]]:
        return list, (self._all(),)


@dataclass(frozen=True)
class BacktestResult:
    """A finished backtest of one strategy on one instrument."""

    symbol: str
    strategy: str
    params: dict[str, object]
    starting_cash: Decimal
    final_equity: Decimal
    fees_paid: Decimal
    trades: Sequence[Trade]  # a list, or a TradeLog (built on first use)
    equity: pd.Series  # float equity marked at each bar close; index: UTC pd.DatetimeIndex
    position: pd.Series  # position in base units after each bar, same index
    closes: pd.Series  # the asset's close per bar, same index (for buy-and-hold)
    fee: Decimal = Decimal(0)  # fee rate per side
    slippage_bps: Decimal = Decimal(0)
    engine: str = "event"  # "event" (full cores), "lean" (shared-core hot path) or "vector"
    extra: dict[str, object] = field(default_factory=dict)  # other metrics sit beside the core keys
    # Every order change and fill of the run, and the risk engine's decisions (empty without risk):
    # for audits and the parity tests; not in the JSON report.
    order_events: tuple[Any, ...] = field(default=(), repr=False)
    risk_decisions: tuple[Any, ...] = field(default=(), repr=False)

    @property
    def bars(self) -> int:
        return len(self.equity)

    @property
    def total_return(self) -> Decimal:
        return self.final_equity / self.starting_cash - 1 if self.starting_cash else Decimal(0)

    def report_json(self) -> dict[str, object]:
        """`{"final_equity", "trades": [...], ...}`: exact decimal strings for money, ISO UTC times."""
        index = self.equity.index
        return {
            "symbol": self.symbol, "strategy": self.strategy, "params": dict(self.params),
            "engine": self.engine,
            "starting_cash": _money(self.starting_cash), "final_equity": _money(self.final_equity),
            "fees_paid": _money(self.fees_paid), "fee": _money(self.fee),
            "slippage_bps": _money(self.slippage_bps),
            "total_return": _money(self.total_return),
            "bars": self.bars,
            "start": index[0].strftime("%Y-%m-%dT%H:%M:%SZ") if len(index) else None,
            "end": index[-1].strftime("%Y-%m-%dT%H:%M:%SZ") if len(index) else None,
            "trades": [trade.to_json() for trade in self.trades],
            **self.extra,
        }
