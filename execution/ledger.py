"""The ledger: cash per asset, positions per instrument, fees, realised and unrealised P/L.

State is a fold over entries — transfers (deposits, withdrawals) and fills (`OrderFilled`) —
applied once each by id, so replaying them rebuilds the same ledger and a duplicate is ignored.
Marks (prices) value the open positions; they are market data, not entries.

Books are kept per quote asset: a fill of BTC/USDT moves USDT cash and the BTC/USDT position,
and its fee leaves the cash of its fee asset. For every asset `a`, exactly, in `Decimal`:

    cash[a] + positions quoted in a at mark + fees_paid[a] == net_deposits[a] + realised[a] + unrealised[a]

An open position's cost basis is kept as a signed sum (not an average), so buying and selling
never divide; only a partial close divides, to take its share of the cost, and the share is
rounded to 1e-18 and removed from the basis exactly as booked, so the books still balance.
Arithmetic runs in a context that raises on any other rounding rather than losing a digit.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from decimal import (
    Context,
    Decimal,
    DivisionByZero,
    Inexact,
    InvalidOperation,
    Overflow,
    localcontext,
)
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from config.errors import DomainError
from topics.market import CandleClosed
from topics.orders import OrderFilled, split_symbol

ZERO = Decimal(0)
STREAM_IDS_KEPT = 10_000  # fill ids a ledger booking a stream's fills remembers (see `Ledger.remember`)
COST_QUANTUM = Decimal("1e-18")
_EXACT = Context(prec=200, traps=[InvalidOperation, DivisionByZero, Overflow, Inexact])
_SHARE = Context(prec=200, traps=[InvalidOperation, DivisionByZero, Overflow])


class Transfer(BaseModel):
    """Money moved into (amount > 0) or out of (amount < 0) the account."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    transfer_id: str = Field(min_length=1)
    asset: str = Field(min_length=1)
    amount: Decimal
    ts_event: int = Field(ge=0)


LedgerEntry = Transfer | OrderFilled
EntryKind = Literal["transfer", "fill"]


def entry_id(entry: LedgerEntry) -> str:
    """The id an entry is applied and stored under: `transfer:<id>` or `fill:<trade id>`."""
    return f"transfer:{entry.transfer_id}" if isinstance(entry, Transfer) else f"fill:{entry.trade_id}"


def entry_record(entry: LedgerEntry) -> dict[str, Any]:
    """`entry` as a storable record: entry_id, kind, ts and a JSON payload (Decimals as strings)."""
    kind: EntryKind = "transfer" if isinstance(entry, Transfer) else "fill"
    payload = entry.model_dump(mode="json")
    return {"entry_id": entry_id(entry), "kind": kind, "ts": entry.ts_event, "payload": payload}


def entry_from_record(kind: str, payload: dict[str, Any]) -> LedgerEntry:
    """The entry a record was made from (the inverse of `entry_record`)."""
    if kind == "transfer":
        return Transfer.model_validate(payload)
    if kind == "fill":
        return OrderFilled.model_validate(payload)
    raise ValueError(f"unknown ledger entry kind {kind!r} (expected transfer or fill)")


@dataclass(frozen=True, slots=True)
class Position:
    """The open quantity of one instrument (negative: short) and what it cost, in its quote asset."""

    symbol: str
    quantity: Decimal = ZERO
    cost: Decimal = ZERO  # signed cost basis of the open quantity
    realised_pnl: Decimal = ZERO  # gross of fees, which the ledger counts apart

    @property
    def quote(self) -> str:
        return split_symbol(self.symbol)[1]

    def average_cost(self, places: int = 8) -> Decimal | None:
        if self.quantity == 0:
            return None
        return (self.cost / self.quantity).quantize(Decimal(1).scaleb(-places))

    def value(self, mark: Decimal | None) -> Decimal:
        """Worth at `mark`; at cost while the instrument has no mark yet."""
        with localcontext(_EXACT):
            return self.cost if mark is None else self.quantity * mark

    def trade(self, quantity: Decimal, price: Decimal) -> Position:
        """After trading signed `quantity` (buy > 0) at `price`: close first, then open the rest."""
        with localcontext(_EXACT):
            if self.quantity == 0 or (self.quantity > 0) == (quantity > 0):
                return replace(self, quantity=self.quantity + quantity, cost=self.cost + quantity * price)
            direction = 1 if self.quantity > 0 else -1
            closing = min(abs(quantity), abs(self.quantity))
            if closing == abs(self.quantity):
                removed = self.cost
            else:
                with localcontext(_SHARE):
                    removed = (self.cost * closing / abs(self.quantity)).quantize(COST_QUANTUM)
            realised = direction * closing * price - removed
            opening = quantity + direction * closing
            return Position(
                self.symbol,
                quantity=self.quantity - direction * closing + opening,
                cost=self.cost - removed + opening * price,
                realised_pnl=self.realised_pnl + realised,
            )


@dataclass
class Ledger:
    """One account's books. Mutate only through `apply` (and `mark` for prices).

    `remember`: how many of the newest fill ids it keeps to ignore a duplicate (None: every id).
    A long-lived ledger fed from a stream bounds it: duplicates there are re-deliveries of recent
    fills, and the ids would otherwise grow with every fill for the life of the account. Transfer
    ids are all kept: they are few, and an opening deposit announced again must never book twice.
    """

    cash: dict[str, Decimal] = field(default_factory=dict)
    positions: dict[str, Position] = field(default_factory=dict)
    marks: dict[str, Decimal] = field(default_factory=dict)
    fees: dict[str, Decimal] = field(default_factory=dict)
    net_deposits: dict[str, Decimal] = field(default_factory=dict)
    realised: dict[str, Decimal] = field(default_factory=dict)  # by quote asset, incl. closed positions
    version: int = 0  # entries applied
    ts: int = 0  # event time of the newest entry
    remember: int | None = None
    _applied: dict[str, None] = field(default_factory=dict, repr=False)  # fill ids, oldest first
    _transfers: set[str] = field(default_factory=set, repr=False)  # transfer ids

    def __setstate__(self, saved: dict[str, Any]) -> None:
        """Restore a pickle (the agents' saved states hold ledgers), also one saved before the ids
        were split into bounded fill ids and transfer ids: then one set of every entry id."""
        if isinstance(ids := saved.get("_applied"), set):
            transfers = {ident for ident in ids if ident.startswith("transfer:")}
            saved = saved | {"_applied": dict.fromkeys(sorted(ids - transfers)), "_transfers": transfers}
        self.__dict__.update({"remember": None, "_transfers": set()} | saved)

    @classmethod
    def from_entries(cls, entries: Iterable[LedgerEntry]) -> Ledger:
        """The ledger these entries make, applied in the order given."""
        ledger = cls()
        for entry in entries:
            ledger.apply(entry)
        return ledger

    def apply(self, entry: LedgerEntry) -> bool:
        """Book `entry`; False (and nothing changes) if an entry with its id was booked before."""
        ident = entry_id(entry)
        if ident in self._applied or ident in self._transfers:
            return False
        if isinstance(entry, Transfer):
            self._transfer(entry)
            self._transfers.add(ident)
        else:
            self._fill(entry)
            self._applied[ident] = None
            if self.remember is not None and len(self._applied) > self.remember:
                del self._applied[next(iter(self._applied))]
        self.version += 1
        self.ts = max(self.ts, entry.ts_event)
        return True

    def deposit(self, asset: str, amount: Decimal, *, transfer_id: str, ts: int = 0) -> bool:
        """Shorthand for applying a `Transfer` in."""
        return self.apply(Transfer(transfer_id=transfer_id, asset=asset, amount=amount, ts_event=ts))

    def mark(self, symbol: str, price: Decimal) -> None:
        """Value `symbol` at `price` from now on."""
        if not price.is_finite() or price <= 0:
            raise DomainError(f"mark of {symbol} must be a positive number, got {price}")
        split_symbol(symbol)
        self.marks[symbol] = price

    def mark_candle(self, candle: CandleClosed) -> None:
        """Mark the candle's instrument at its close (the float's shortest exact decimal)."""
        self.mark(candle.symbol, Decimal(repr(candle.close)))

    def _transfer(self, entry: Transfer) -> None:
        if not entry.amount.is_finite() or entry.amount == 0:
            raise DomainError(
                f"transfer {entry.transfer_id}: amount must be a non-zero number, got {entry.amount}"
            )
        have = self.cash.get(entry.asset, ZERO)
        if entry.amount < 0 and have + entry.amount < 0:
            raise DomainError(
                f"transfer {entry.transfer_id}: cannot withdraw {-entry.amount} {entry.asset}, "
                f"the cash is {have}"
            )
        with localcontext(_EXACT):
            _add(self.cash, entry.asset, entry.amount)
            _add(self.net_deposits, entry.asset, entry.amount)

    def _fill(self, entry: OrderFilled) -> None:
        quote = split_symbol(entry.symbol)[1]
        signed = entry.quantity if entry.side == "buy" else -entry.quantity
        before = self.positions.get(entry.symbol, Position(entry.symbol))
        after = before.trade(signed, entry.price)
        with localcontext(_EXACT):
            _add(self.cash, quote, -signed * entry.price)
            _add(self.cash, entry.fee_asset, -entry.fee)
            _add(self.fees, entry.fee_asset, entry.fee)
            _add(self.realised, quote, after.realised_pnl - before.realised_pnl)
        self.positions[entry.symbol] = after

    def assets(self) -> list[str]:
        """Every asset the books mention, sorted."""
        quotes = {position.quote for position in self.positions.values()}
        return sorted(set(self.cash) | set(self.fees) | set(self.net_deposits) | quotes)

    def position_value(self, asset: str) -> Decimal:
        """Open positions quoted in `asset`, at mark."""
        with localcontext(_EXACT):
            return sum(
                (p.value(self.marks.get(s)) for s, p in self.positions.items() if p.quote == asset), ZERO
            )

    def unrealised_pnl(self, asset: str) -> Decimal:
        with localcontext(_EXACT):
            return sum(
                (p.value(self.marks.get(s)) - p.cost for s, p in self.positions.items() if p.quote == asset),
                ZERO,
            )

    def equity(self, asset: str) -> Decimal:
        """Cash plus open positions at mark, in `asset`."""
        with localcontext(_EXACT):
            return self.cash.get(asset, ZERO) + self.position_value(asset)

    def realised_pnl(self, asset: str) -> Decimal:
        return self.realised.get(asset, ZERO)

    def fees_paid(self, asset: str) -> Decimal:
        return self.fees.get(asset, ZERO)

    def balances(self) -> dict[str, Decimal]:
        """What a spot account holds per asset: cash, plus each position's base amount."""
        out = dict(self.cash)
        with localcontext(_EXACT):
            for symbol, position in self.positions.items():
                if position.quantity != 0:
                    _add(out, split_symbol(symbol)[0], position.quantity)
        return dict(sorted(out.items()))

    def to_state(self) -> dict[str, Any]:
        """Everything `from_state` needs to rebuild these books exactly, JSON-ready (Decimals as
        strings); the ids it remembers included, so a duplicate is still ignored after a restore."""
        state: dict[str, Any] = {book: _strings(getattr(self, book)) for book in _BOOKS}
        state["positions"] = {p.symbol: [str(p.quantity), str(p.cost), str(p.realised_pnl)]
                              for p in self.positions.values()}
        return state | {"version": self.version, "ts": self.ts, "remember": self.remember,
                        "applied": list(self._applied), "transfers": sorted(self._transfers)}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Ledger:
        """The books `to_state` saved."""
        positions = {symbol: Position(symbol, *map(Decimal, amounts))
                     for symbol, amounts in state["positions"].items()}
        return cls(**{book: _decimals(state[book]) for book in _BOOKS}, positions=positions,
                   version=state["version"], ts=state["ts"], remember=state["remember"],
                   _applied=dict.fromkeys(state["applied"]), _transfers=set(state["transfers"]))

    def snapshot(self) -> dict[str, Any]:
        """The books as JSON-ready data (Decimals as strings), for storage and dashboards."""
        return {
            "version": self.version,
            "ts": self.ts,
            "assets": {
                asset: {
                    "cash": str(self.cash.get(asset, ZERO)),
                    "equity": str(self.equity(asset)),
                    "net_deposits": str(self.net_deposits.get(asset, ZERO)),
                    "fees_paid": str(self.fees_paid(asset)),
                    "realised_pnl": str(self.realised_pnl(asset)),
                    "unrealised_pnl": str(self.unrealised_pnl(asset)),
                }
                for asset in self.assets()
            },
            "positions": {
                symbol: {
                    "quantity": str(p.quantity),
                    "cost": str(p.cost),
                    "average_cost": None if p.quantity == 0 else str(p.average_cost()),
                    "mark": None if symbol not in self.marks else str(self.marks[symbol]),
                    "realised_pnl": str(p.realised_pnl),
                }
                for symbol, p in sorted(self.positions.items())
            },
        }


def _add(book: dict[str, Decimal], asset: str, amount: Decimal) -> None:
    book[asset] = book.get(asset, ZERO) + amount


_BOOKS = ("cash", "marks", "fees", "net_deposits", "realised")  # the Ledger's Decimal books (marks by symbol)


def _strings(book: dict[str, Decimal]) -> dict[str, str]:
    return {key: str(value) for key, value in book.items()}


def _decimals(book: dict[str, str]) -> dict[str, Decimal]:
    return {key: Decimal(value) for key, value in book.items()}
