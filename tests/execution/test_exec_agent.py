"""The execution agent's core without a broker: exits that close positions, the kill switch, bad
orders rejected with reasons, and a restart after a crash that publishes again instead of re-sending.

The agent runs with an in-memory state store and no Postgres; candles are made by hand so each
test controls exactly which price a stop, target or trailing stop meets.
"""

from __future__ import annotations

import base64
from decimal import Decimal
from typing import Any

import orjson
import pytest
from execution_data import FakeLog

from agents import execution as execution_agent
from agents.base import AgentDeps
from agents.dispatch import Dispatcher, InboundRecord
from agents.execution import ExecutionAgent, ExecutionState
from config.settings import AgentsConfig
from execution.order import client_order_id
from factories import HOUR_MS, candle_envelope
from memory.ports import InMemoryStateStore
from topics.envelope import Envelope
from topics.events import Event
from topics.orders import OrderFilled, OrderUpdated
from topics.registry import DEADLETTER, RISK_DECISIONS
from topics.serialization import encode, headers
from topics.system import DeadLettered
from topics.trading import KillSwitchChanged, PortfolioSnapshot, RiskDecision, TrailingStopSpec

D = Decimal


def make_agent(store: InMemoryStateStore | None = None, log: FakeLog | None = None) -> ExecutionAgent:
    return ExecutionAgent(AgentDeps(store=store or InMemoryStateStore(), log=log or FakeLog()))


def decision(**changes: Any) -> RiskDecision:
    values: dict[str, Any] = {
        "decision_id": "d1", "strategy": "t", "exchange": "binance", "symbol": "BTC/USDT", "side": "buy",
        "entry_type": "market", "entry_price": D("100"), "verdict": "approved", "size": D("1"),
        "risk_amount": D("5"), "stop_loss": D("95"), "take_profit": D("110"), "reasons": ["test"],
        "portfolio": PortfolioSnapshot(ts=0, equity=D("100000")),
    }
    values.update(changes)
    return RiskDecision(**values)


def wrap(payload: Event, ts: int, key: str = "binance:BTC/USDT") -> Envelope[Event]:
    return Envelope.create(payload, key=key, ts=ts, source="test")


def bar(hour: int, *ohlc: float) -> Envelope[Any]:
    """An hourly BTC/USDT candle (open, high, low, close) with plenty of volume."""
    open_, high, low, close = ohlc
    return candle_envelope(open_time=hour * HOUR_MS, open=open_, high=high, low=low, close=close,
                           volume=1000.0)


async def run(agent: ExecutionAgent, *inputs: Envelope[Any]) -> list[Event]:
    out: list[Event] = []
    for env in inputs:
        out += [e.payload for e in await agent.handle(env)]
    return out


def updates(events: list[Event]) -> list[OrderUpdated]:
    return [e for e in events if isinstance(e, OrderUpdated)]


def fills(events: list[Event]) -> list[OrderFilled]:
    return [e for e in events if isinstance(e, OrderFilled)]


def position(agent: ExecutionAgent, symbol: str = "BTC/USDT") -> Decimal:
    held = agent.state.ledger.positions.get(symbol)
    return held.quantity if held is not None else D(0)


# ---- exits ----


async def test_a_stop_loss_closes_the_position_at_the_next_open() -> None:
    agent = make_agent()
    events = await run(agent, wrap(decision(), 0), bar(0, 100, 101, 99, 100))
    assert position(agent) == D("1")
    events = await run(agent, bar(1, 99, 99.5, 94, 96))  # trades through the stop at 95
    (exit_new, exit_sent) = updates(events)
    assert (exit_new.decision_id, exit_new.side, exit_new.order_type) == ("d1:stop-loss", "sell", "market")
    assert exit_sent.status == "submitted"
    assert exit_new.quantity == D("1")
    events = await run(agent, bar(2, 96, 97, 95.5, 96.5), bar(3, 96.5, 97, 90, 91))
    (exit_fill,) = fills(events)
    assert exit_fill.client_order_id == client_order_id("d1:stop-loss")
    assert exit_fill.price < D("96")  # the open of the next candle, less slippage
    assert position(agent) == 0
    assert not any(u.decision_id.startswith("d1:") for u in updates(events) if u.seq == 0)  # one exit only
    assert agent.state.protections == {}


async def test_a_decision_arriving_after_its_next_candle_fills_on_that_candle_as_if_in_time() -> None:
    """A replay at full speed can bring candles to the execution agent before the decisions they
    caused; the order must still fill on the first candle opening at or after its decision time."""
    candles = [bar(1, 100, 101, 99, 100), bar(2, 102, 103, 101, 102), bar(3, 104, 105, 103, 104)]
    in_time = make_agent()
    on_time = fills(await run(in_time, wrap(decision(), HOUR_MS), *candles))
    late = make_agent()
    await run(late, bar(0, 98, 99, 97, 98))  # before the decision: not one to fill on
    late_fills = fills(await run(late, *candles, wrap(decision(), HOUR_MS)))
    assert len(on_time) == 1
    assert late_fills == on_time  # same price (hour 1's open, slipped), size, fee and event time
    assert late.state.ledger.balances() == in_time.state.ledger.balances()
    # After a restart the recent candles are gone: a late order waits for the next candle instead.
    restarted = make_agent()
    await run(restarted, *candles)
    restarted._recent.clear()
    assert fills(await run(restarted, wrap(decision(decision_id="d2"), HOUR_MS))) == []
    (fill,) = fills(await run(restarted, bar(4, 106, 107, 105, 106)))
    assert fill.ts_event > on_time[0].ts_event


async def test_a_take_profit_closes_a_short_and_a_touch_of_the_stop_wins_ties() -> None:
    agent = make_agent()
    short = decision(side="sell", stop_loss=D("105"), take_profit=D("90"))
    await run(agent, wrap(short, 0), bar(0, 100, 101, 99, 100))
    assert position(agent) == D("-1")
    events = await run(agent, bar(1, 99, 100, 89, 90))  # reaches the target 90
    assert [u.decision_id for u in updates(events)] == ["d1:take-profit", "d1:take-profit"]
    assert updates(events)[0].side == "buy"
    await run(agent, bar(2, 90, 91, 89, 90))
    assert position(agent) == 0

    both = make_agent()
    await run(both, wrap(decision(), 0), bar(0, 100, 101, 99, 100))
    events = await run(both, bar(1, 100, 111, 94, 100))  # stop and target in one candle
    assert updates(events)[0].decision_id == "d1:stop-loss"  # the conservative assumption


async def test_a_trailing_stop_ratchets_with_the_best_price_and_exits_above_the_first_stop() -> None:
    agent = make_agent()
    spec = TrailingStopSpec(distance=D("3"), atr_multiple=D("1"))
    trailing = decision(take_profit=D("200"), trailing_stop=spec)
    await run(agent, wrap(trailing, 0), bar(0, 100, 101, 99, 100))
    stops = [agent.state.protections["binance:BTC/USDT"].current_stop]
    path = [(100, 110, 100, 108), (108, 109, 107.5, 108), (110, 112, 110, 111)]
    for hour, (o, h, lo, c) in enumerate(path, 1):
        assert not updates(await run(agent, bar(hour, o, h, lo, c)))  # never reaches the trailing stop
        stops.append(agent.state.protections["binance:BTC/USDT"].current_stop)
    assert stops == [D("98"), D("107"), D("107"), D("109")]  # high - 3, and never lower in the pullback
    events = await run(agent, bar(4, 111, 111, 108, 108.5))
    assert updates(events)[0].decision_id == "d1:trailing-stop"
    (exit_fill,) = fills(await run(agent, bar(5, 108.5, 109, 108, 108.5)))
    assert exit_fill.price > D("108")
    assert position(agent) == 0
    assert agent.state.ledger.realised_pnl("USDT") > 0  # the trailing stop kept the gain; 95 would not


async def test_a_position_closed_by_the_strategy_is_not_exited_again() -> None:
    agent = make_agent()
    await run(agent, wrap(decision(), 0), bar(0, 100, 101, 99, 100))
    close = decision(decision_id="d2", side="sell", sizing="reduce_only", stop_loss=None, take_profit=None,
                     risk_amount=D("0"))
    events = await run(agent, wrap(close, HOUR_MS), bar(1, 100, 100, 90, 91))  # d2 fills; the low hits 95
    assert [f.client_order_id for f in fills(events)] == [client_order_id("d2")]
    assert position(agent) == 0
    events = await run(agent, bar(2, 91, 92, 80, 85))
    assert updates(events) == []  # nothing to protect any more: no stop order turns it short
    assert agent.state.protections == {}


async def test_an_exit_repeated_before_the_first_one_filled_is_rejected_with_the_reason() -> None:
    """Strategies may say "exit" again before the fill of the first exit is back: the second must
    neither trade nor vanish (the orchestrator would keep it open), so it is a rejected order."""
    agent = make_agent()
    await run(agent, wrap(decision(), 0), bar(0, 100, 101, 99, 100))
    close: dict[str, Any] = {"side": "sell", "sizing": "reduce_only", "stop_loss": None, "take_profit": None,
                             "risk_amount": D("0")}
    first = updates(await run(agent, wrap(decision(decision_id="d2", **close), HOUR_MS)))
    assert [u.status for u in first] == ["new", "submitted"]
    again = updates(await run(agent, wrap(decision(decision_id="d3", **close), HOUR_MS)))
    assert [(u.decision_id, u.status) for u in again] == [("d3", "new"), ("d3", "rejected")]
    assert "no position left to reduce" in again[-1].reasons[0]
    (fill,) = fills(await run(agent, bar(1, 100, 101, 99, 100)))
    assert fill.client_order_id == client_order_id("d2")
    assert position(agent) == 0


async def test_an_opposite_entry_that_only_reduces_a_position_leaves_its_exits_armed() -> None:
    agent = make_agent()
    await run(agent, wrap(decision(), 0), bar(0, 100, 101, 99, 100))
    against = decision(decision_id="d2", side="sell", size=D("0.5"), stop_loss=D("105"), take_profit=D("90"))
    await run(agent, wrap(against, HOUR_MS), bar(1, 100, 100, 99, 99.5))
    assert position(agent) == D("0.5")
    (exit_new, _) = updates(await run(agent, bar(2, 99, 99, 94, 95)))  # the long's stop at 95
    assert (exit_new.decision_id, exit_new.side, exit_new.quantity) == ("d1:stop-loss", "sell", D("0.5"))


async def test_an_exit_the_venue_refuses_is_reported_once_not_every_candle() -> None:
    agent = make_agent()
    await run(agent, wrap(decision(), 0), bar(0, 100, 101, 99, 100))
    trim = decision(decision_id="d2", side="sell", sizing="reduce_only", size=D("0.995"), stop_loss=None,
                    take_profit=None, risk_amount=D("0"))
    await run(agent, wrap(trim, HOUR_MS), bar(1, 100, 100, 99, 99.5))
    assert position(agent) == D("0.005")  # worth 0.5: below the paper venue's minimum notional of 1
    events = await run(agent, bar(2, 99, 99, 90, 91))
    assert [u.status for u in updates(events)] == ["new", "rejected"]
    assert "below the minimum" in updates(events)[-1].reasons[0]
    assert updates(await run(agent, bar(3, 91, 91, 85, 86))) == []


# ---- the kill switch ----


def switch(engaged: bool, at: int, reason: str = "exchange incident") -> Envelope[Event]:
    return wrap(KillSwitchChanged(engaged=engaged, actor="ops", reason=reason, at=at), at, key="kill_switch")


async def test_the_kill_switch_cancels_open_orders_blocks_new_ones_and_survives_a_restart() -> None:
    store = InMemoryStateStore()
    agent = make_agent(store)
    resting = decision(entry_type="limit", entry_price=D("50"), stop_loss=D("45"))
    assert updates(await run(agent, wrap(resting, 0)))[-1].status == "submitted"
    (cancelled,) = updates(await run(agent, switch(True, 1000)))
    assert (cancelled.status, cancelled.client_order_id) == ("cancelled", client_order_id("d1"))
    assert cancelled.reasons == ["kill switch engaged by ops: exchange incident"]
    blocked = updates(await run(agent, wrap(decision(decision_id="d2"), 2000)))
    assert [u.status for u in blocked] == ["new", "rejected"]
    assert blocked[-1].reasons == ["kill switch on since 1970-01-01T00:00:01Z (ops: exchange incident): "
                                   "no new orders"]
    assert await agent.state.venues["binance:BTC/USDT"].fetch_open_orders() == []
    assert any(isinstance(e, OrderUpdated) and e.status == "rejected" for e in agent.state.unsaved)  # kept

    await agent.checkpoint()
    restarted = make_agent(store)
    await restarted.start()
    again = updates(await run(restarted, wrap(decision(decision_id="d3"), 3000)))
    assert again[-1].status == "rejected"
    assert "kill switch on" in again[-1].reasons[0]
    assert updates(await run(restarted, switch(False, 4000, "incident over"))) == []
    assert updates(await run(restarted, wrap(decision(decision_id="d4"), 5000)))[-1].status == "submitted"


async def test_protective_exits_wait_while_the_kill_switch_is_on() -> None:
    agent = make_agent()
    await run(agent, wrap(decision(), 0), bar(0, 100, 101, 99, 100), switch(True, 2 * HOUR_MS))
    assert updates(await run(agent, bar(1, 99, 99, 94, 95))) == []  # the stop is hit, but nothing is sent
    await run(agent, switch(False, 3 * HOUR_MS, "over"))
    assert updates(await run(agent, bar(2, 95, 96, 93, 94)))[0].decision_id == "d1:stop-loss"


# ---- bad orders ----


@pytest.mark.parametrize(("changes", "reason"), [
    ({"size": D("0.000000001")}, "finer than the step size"),
    ({"size": D("0.00000001")}, "notional 0.00000100 is below the minimum 1"),
    ({"symbol": "BTCUSDT"}, "unknown symbol BTCUSDT on binance"),
    ({"entry_type": "stop", "entry_price": D("-5")}, "stop_price must be positive, got -5"),
])
async def test_bad_orders_are_rejected_with_reasons_published_and_kept(
    changes: dict[str, Any], reason: str
) -> None:
    agent = make_agent()
    bad = decision(**changes)
    events = updates(await run(agent, wrap(bad, 0, key=bad.key)))
    assert [u.status for u in events] == ["new", "rejected"]
    assert any(reason in r for r in events[-1].reasons), events[-1].reasons
    # stored in Postgres at the checkpoint
    assert events == [e for e in agent.state.unsaved if isinstance(e, OrderUpdated)]
    for venue in agent.state.venues.values():
        assert await venue.fetch_open_orders() == []


@pytest.mark.parametrize(("field", "value"), [("size", "-1"), ("size", "0"), ("entry_price", "NaN")])
async def test_a_negative_or_zero_size_or_a_nan_price_is_dead_lettered_whole_with_the_reason(
    field: str, value: str
) -> None:
    """Such a decision cannot even be read as one (the model refuses it), so the runtime's dead
    letter keeps it, bytes and reason, instead of the order store."""
    env = wrap(decision(entry_type="limit"), 0)
    body = orjson.loads(encode(env))
    body["payload"][field] = value
    raw = orjson.dumps(body)
    record = InboundRecord(topic=RISK_DECISIONS.name, partition=0, offset=7, key=b"binance:BTC/USDT",
                           value=raw, timestamp=0, headers=tuple(headers(env)))
    agent = make_agent()
    (out,) = await Dispatcher(agent, AgentsConfig()).dispatch(record)
    assert out.topic == DEADLETTER.name
    letter = DeadLettered.model_validate(orjson.loads(out.value)["payload"])
    assert base64.b64decode(letter.value) == raw  # nothing lost: the bytes as they came
    assert field in letter.reason
    assert agent.state.venues == {}  # and nothing was sent


# ---- a crash between sending and committing ----


async def test_after_a_crash_before_the_commit_the_same_events_are_published_and_nothing_is_resent() -> None:
    store, first_log = InMemoryStateStore(), FakeLog()
    first = make_agent(store, first_log)
    env = wrap(decision(entry_type="limit", entry_price=D("90")), 0)
    sent = await first.handle(env)
    assert [e.payload.status for e in sent] == ["new", "submitted"]  # type: ignore[attr-defined]
    assert await first.handle(env) == []  # a duplicate in the same life: its outputs are on their way
    # The process dies here: outputs maybe published, offsets not committed, no checkpoint ran.

    second_log = FakeLog()
    second = make_agent(store, second_log)
    await second.start()
    again = await second.handle(env)  # the uncommitted decision is read again
    assert [e.event_id for e in again] == [e.event_id for e in sent]
    assert [e.model_dump() for e in again] == [e.model_dump() for e in sent]
    assert len(first_log.named("order_placed")) == 1
    assert second_log.named("order_placed") == []  # the venue was not asked a second time
    venue = second.state.venues["binance:BTC/USDT"]
    assert [o.client_order_id for o in await venue.fetch_open_orders()] == [client_order_id("d1")]

    await second.checkpoint()  # committed: a later duplicate is only acknowledged
    assert await second.handle(env) == []


async def test_the_state_remembers_only_the_newest_decisions_and_loads_an_older_pickle(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Saved after every order, the state must not grow with every decision ever placed: beyond
    HANDLED_KEPT the oldest ids go (a replayed old decision is found in Postgres instead)."""
    monkeypatch.setattr(execution_agent, "HANDLED_KEPT", 2)
    agent = make_agent()
    for n in range(3):
        await run(agent, wrap(decision(decision_id=f"d{n}", size=D("0.1")), n))
    assert list(agent.state.handled) == ["d1", "d2"]
    saved = agent.state.__dict__ | {"handled": {"d1", "d2"}}  # as saved when it was a set
    restored = ExecutionState.__new__(ExecutionState)
    restored.__setstate__(saved)
    assert list(restored.handled) == ["d1", "d2"]
