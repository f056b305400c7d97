"""Protective exits: what an entry's risk decision says about leaving, and when a candle says to leave.

The execution agent (`agents.execution`) and the backtest (`backtest.engine`) run exits with
these rules; each only adds how it learns about its orders and how it sends one.

- `exit_plan(decision)`: an approved decision with a stop-loss carries its exits (`ExitPlan`:
  the stop, the take-profit, the trailing distance), kept with its entry order until it fills.
- `arm(plan, position, price, current)`: when the entry fills, the plan protects the position
  (`Protection`); the latest entry's plan wins, and a fill that only reduced a position the
  other way arms nothing (that position keeps its exits).
- After each closed candle of the instrument: a protection whose position is gone or turned by
  other orders is dropped (`Protection.covers`); otherwise `Protection.reached` says whether a
  long's stop (the trailing stop once it has ratcheted past the decision's stop) was reached by
  the candle's low, or its take-profit by its high (a short mirrors it; when a candle reaches
  both, the stop is assumed first). If neither, the trailing stop ratchets with the candle's
  best price (`Protection.ratchet`).
- An exit reached becomes a market order for the position (`reducible`: less what open orders on
  the same side already take off), whose decision id is the entry's plus `:stop-loss`,
  `:take-profit` or `:trailing-stop` (`Protection.exit_decision_id`), so it is traceable and
  never sent twice; a later exit of the same protection (after the first ended short) adds its
  count.

Pure: no I/O, no clock. `ExitPlan` and `Protection` are part of the execution agent's pickled
state, so their fields only ever grow (with defaults).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal, Protocol

from execution.market import Market
from execution.risk import TrailingStop
from topics.trading import RiskDecision, Side

ExitKind = Literal["stop-loss", "take-profit", "trailing-stop"]
PositionSide = Literal["long", "short"]


@dataclass(frozen=True)
class ExitPlan:
    """What an entry order's decision said about leaving: stop, target, trailing distance."""

    decision_id: str
    side: PositionSide
    stop_loss: Decimal
    take_profit: Decimal | None
    trailing_distance: Decimal | None


def exit_plan(decision: RiskDecision) -> ExitPlan | None:
    """The exits an approved decision sets for its entry; None when it sets no stop."""
    if decision.stop_loss is None:
        return None
    trailing = decision.trailing_stop.distance if decision.trailing_stop is not None else None
    side: PositionSide = "long" if decision.side == "buy" else "short"
    return ExitPlan(decision.decision_id, side, decision.stop_loss, decision.take_profit, trailing)


def holds(side: PositionSide, position: Decimal) -> bool:
    """A position of signed `position` base units is open on `side`."""
    return position != 0 and (position > 0) == (side == "long")


@dataclass
class Protection:
    """The armed exits of one instrument's position (the latest filled entry's plan)."""

    plan: ExitPlan
    stop: Decimal
    trailing: TrailingStop | None = None
    exit_cid: str | None = None  # the last exit order sent
    exits: int = 0  # exit orders sent: a second one (after the first ended short) gets its own id

    @property
    def current_stop(self) -> Decimal:
        """The decision's stop, or the trailing stop once it has moved past it."""
        if self.trailing is None:
            return self.stop
        return max(self.stop, self.trailing.stop) if self.plan.side == "long" else min(self.stop,
                                                                                       self.trailing.stop)

    @property
    def exit_side(self) -> Side:
        return "sell" if self.plan.side == "long" else "buy"

    def covers(self, position: Decimal) -> bool:
        """The position (signed, after the candle's fills) is still the one the plan protects."""
        return holds(self.plan.side, position)

    def reached(self, high: Decimal, low: Decimal) -> ExitKind | None:
        """Which exit a candle with this `high` and `low` reached: the stop first, then the target."""
        long = self.plan.side == "long"
        stop = self.current_stop
        if low <= stop if long else high >= stop:
            moved = self.trailing is not None and stop != self.stop
            return "trailing-stop" if moved else "stop-loss"
        target = self.plan.take_profit
        if target is not None and (high >= target if long else low <= target):
            return "take-profit"
        return None

    def ratchet(self, high: Decimal, low: Decimal) -> None:
        """Move the trailing stop (if any) with the candle's best price for the position."""
        if self.trailing is not None:
            self.trailing = self.trailing.update(high if self.plan.side == "long" else low)

    def exit_decision_id(self, kind: ExitKind) -> str:
        """The decision id of the next exit order of `kind`."""
        return f"{self.plan.decision_id}:{kind}" + (f":{self.exits}" if self.exits else "")

    def sent(self, client_order_id: str) -> None:
        """An exit order was made with this id: it is the one working, and the next one counts on."""
        self.exit_cid = client_order_id
        self.exits += 1


def arm(plan: ExitPlan, position: Decimal, price: Decimal, current: Protection | None) -> Protection | None:
    """The protection an entry's fill at `price` arms, given the position right after that fill.

    None when nothing changes: the fill only reduced a position the other way (that one keeps its
    exits), or an earlier part of the same order armed it already.
    """
    if not holds(plan.side, position):
        return None
    if current is not None and current.plan.decision_id == plan.decision_id:
        return None
    trailing = None
    if plan.trailing_distance is not None:
        trailing = TrailingStop(plan.side, plan.trailing_distance, plan.stop_loss, price)
    return Protection(plan, plan.stop_loss, trailing)


class WorkingOrder(Protocol):
    """An open order as `reducible` reads it (an `execution.order.Order` or its last `OrderUpdated`)."""

    @property
    def side(self) -> Side: ...
    @property
    def quantity(self) -> Decimal: ...
    @property
    def filled_quantity(self) -> Decimal: ...


def reduces(position: Decimal, side: str) -> bool:
    """An order of `side` takes the signed `position` towards zero."""
    return (position > 0 and side == "sell") or (position < 0 and side == "buy")


NOTHING_TO_REDUCE = "reduce-only: no position left to reduce (open orders already close it)"


def reducible(
    market: Market, position: Decimal, side: str, wanted: Decimal, working: Iterable[WorkingOrder]
) -> Decimal:
    """How much a reducing order may still trade: `wanted`, at most the position in the opposite
    direction less what the instrument's open orders on the same side (`working`) will already
    take off, on the step. Strategies can repeat an exit before its fill comes back; without this
    an exit would turn into a new position."""
    if not reduces(position, side):
        return Decimal(0)
    pending = sum((o.quantity - o.filled_quantity for o in working if o.side == side), Decimal(0))
    return market.floor_quantity(min(wanted, abs(position) - pending))
