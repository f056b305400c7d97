"""Protective exits (`execution.exits`), the rules the execution agent and the backtest share: what a
decision plans, when a fill arms it, which exit a candle reaches, how the trailing stop ratchets, the
exit's decision id, and how much a reducing order may still trade. Checked by hand."""

from __future__ import annotations

import pickle
from decimal import Decimal
from typing import Any

import agents.execution
from agents.execution import ExecutionState
from execution.exits import ExitPlan, Protection, arm, exit_plan, holds, reducible
from execution.ledger import Ledger
from execution.market import Market
from execution.risk import TrailingStop
from topics.trading import PortfolioSnapshot, RiskDecision, TrailingStopSpec

D = Decimal
BTC = Market("binance", "BTC/USDT", tick_size=D("0.01"), step_size=D("0.001"), min_quantity=D("0.001"),
             min_notional=D("10"))


def decision(**changes: Any) -> RiskDecision:
    values: dict[str, Any] = {
        "decision_id": "d1", "strategy": "t", "exchange": "binance", "symbol": "BTC/USDT", "side": "buy",
        "entry_type": "market", "entry_price": D("100"), "verdict": "approved", "size": D("1"),
        "sizing": "fixed_fraction", "risk_amount": D("5"), "stop_loss": D("95"), "take_profit": D("110"),
        "trailing_stop": TrailingStopSpec(distance=D("4"), atr_multiple=D("2")), "reasons": ["ok"],
        "portfolio": PortfolioSnapshot(portfolio="paper", ts=0, equity=D("1000"), positions=()),
    }
    values.update(changes)
    return RiskDecision(**values)


LONG = ExitPlan("d1", "long", D("95"), D("110"), None)
SHORT = ExitPlan("d2", "short", D("105"), D("90"), None)


def test_a_decision_with_a_stop_plans_its_exits_and_one_without_plans_none() -> None:
    assert exit_plan(decision()) == ExitPlan("d1", "long", D("95"), D("110"), D("4"))
    assert exit_plan(decision(side="sell", stop_loss=D("105"), take_profit=None, trailing_stop=None)) == \
        ExitPlan("d1", "short", D("105"), None, None)
    assert exit_plan(decision(stop_loss=None)) is None


def test_a_fill_arms_its_plan_once_and_never_for_a_position_the_other_way() -> None:
    plan = ExitPlan("d1", "long", D("95"), None, D("4"))
    armed = arm(plan, D("1"), D("100"), None)
    assert armed == Protection(plan, D("95"), TrailingStop("long", D("4"), D("95"), D("100")))
    assert arm(plan, D("2"), D("101"), armed) is None  # a later part of the same order: already armed
    later = ExitPlan("d3", "long", D("97"), None, None)
    assert arm(later, D("3"), D("102"), armed) == Protection(later, D("97"))  # the latest entry's plan wins
    # a buy that only reduced a short (still short, or flat) arms nothing: the short keeps its exits
    assert arm(plan, D("-1"), D("100"), None) is None
    assert arm(plan, D("0"), D("100"), None) is None
    assert holds("short", D("-1"))
    assert not holds("long", D("-1"))


def test_the_stop_is_reached_first_then_the_target_and_a_short_mirrors_it() -> None:
    long, short = Protection(LONG, D("95")), Protection(SHORT, D("105"))
    assert long.reached(high=D("111"), low=D("94")) == "stop-loss"  # both in one candle: the stop first
    assert long.reached(high=D("110"), low=D("96")) == "take-profit"
    assert long.reached(high=D("109.99"), low=D("95.01")) is None
    assert long.reached(high=D("100"), low=D("95")) == "stop-loss"  # touching is enough
    assert short.reached(high=D("106"), low=D("89")) == "stop-loss"
    assert short.reached(high=D("104"), low=D("90")) == "take-profit"
    assert short.reached(high=D("104.99"), low=D("90.01")) is None
    assert (long.exit_side, short.exit_side) == ("sell", "buy")
    assert not long.covers(D("0"))
    assert not long.covers(D("-1"))
    assert long.covers(D("0.5"))


def test_the_trailing_stop_ratchets_with_the_best_price_and_then_names_the_exit() -> None:
    plan = ExitPlan("d1", "long", D("95"), None, D("4"))
    protection = arm(plan, D("1"), D("100"), None)
    assert protection is not None
    assert protection.current_stop == D("95")  # the decision's stop until the first ratchet
    protection.ratchet(high=D("98"), low=D("97"))
    assert protection.current_stop == D("96")  # 4 behind the best price since the fill at 100
    protection.ratchet(high=D("104"), low=D("99"))
    assert protection.current_stop == D("100")
    protection.ratchet(high=D("101"), low=D("100.5"))
    assert protection.current_stop == D("100")  # never gives ground back
    assert protection.reached(high=D("101"), low=D("100")) == "trailing-stop"

    short = arm(ExitPlan("d2", "short", D("105"), None, D("4")), D("-1"), D("100"), None)
    assert short is not None
    short.ratchet(high=D("97"), low=D("95"))
    assert short.current_stop == D("99")
    assert short.reached(high=D("99"), low=D("96")) == "trailing-stop"
    without = Protection(LONG, D("95"))
    without.ratchet(high=D("200"), low=D("150"))  # no trailing stop: nothing moves
    assert without.current_stop == D("95")


def test_each_exit_order_has_its_own_decision_id() -> None:
    protection = Protection(LONG, D("95"))
    assert protection.exit_decision_id("stop-loss") == "d1:stop-loss"
    protection.sent("cq-first")
    assert (protection.exit_cid, protection.exits) == ("cq-first", 1)
    assert protection.exit_decision_id("take-profit") == "d1:take-profit:1"


class Working:
    def __init__(self, side: str, quantity: str, filled: str) -> None:
        self.side, self.quantity, self.filled_quantity = side, D(quantity), D(filled)


def test_a_reducing_order_takes_off_at_most_what_open_orders_leave_of_the_position() -> None:
    assert reducible(BTC, D("1"), "sell", D("2"), []) == D("1")
    assert reducible(BTC, D("1"), "sell", D("0.4"), []) == D("0.4")
    working = [Working("sell", "0.5", "0.2"), Working("buy", "3", "0")]  # 0.3 still to sell; the buy adds
    assert reducible(BTC, D("1"), "sell", D("1"), working) == D("0.7")  # type: ignore[arg-type]
    assert reducible(BTC, D("-1.0005"), "buy", D("5"), []) == D("1.000")  # on the step, never more
    assert reducible(BTC, D("1"), "buy", D("1"), []) == 0  # a buy adds to a long
    assert reducible(BTC, D("0"), "sell", D("1"), []) == 0


def test_an_execution_state_saved_before_the_exits_moved_still_loads() -> None:
    """The execution agent pickles its state; one saved when the classes were `agents.execution`'s
    names them there, and they must still load (the agent re-exports them)."""
    assert agents.execution.Protection is Protection
    assert agents.execution.ExitPlan is ExitPlan
    protection = arm(ExitPlan("d1", "long", D("95"), D("110"), D("4")), D("1"), D("100"), None)
    assert protection is not None
    state = ExecutionState(ledger=Ledger(), plans={"cq-x": LONG},
                           protections={"binance:BTC/USDT": protection})
    saved = pickle.dumps(state, protocol=2)  # names classes as text: "c<module>\n<name>\n"
    old = saved.replace(b"cexecution.exits\n", b"cagents.execution\n")
    assert old != saved
    assert b"cexecution.exits\n" not in old
    restored = pickle.loads(old)
    assert restored.protections == state.protections
    assert restored.plans == state.plans
