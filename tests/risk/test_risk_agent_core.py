"""The risk agent's core without a broker: the kill switch from `risk.control`, orders approved but not
yet filled counted against the limits, and the risk breakdown it publishes, checked by hand."""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

import numpy as np
import orjson
import pytest

from agents.risk import RiskCore
from config.settings import PaperTradingConfig, RiskConfig
from execution.order import client_order_id
from execution.risk import aligned_log_returns
from factories import HOUR_MS, candle_envelope
from topics.envelope import Envelope
from topics.events import Event
from topics.orders import AccountTransfer, OrderFilled, OrderUpdated
from topics.trading import KillSwitchChanged, OrderIntent, RiskBreakdown, RiskDecision, RiskModeChanged

D = Decimal
PAPER = PaperTradingConfig(starting_cash=D("10000"))


def core(**risk: Any) -> RiskCore:
    return RiskCore(RiskConfig(**risk), PAPER)


def intent(n: int, **changes: Any) -> Envelope[Event]:
    values: dict[str, Any] = {"decision_id": f"i{n}", "strategy": "t", "exchange": "binance",
                              "symbol": "BTC/USDT", "side": "buy", "stop_price": D("95"),
                              "take_profit": D("120")}
    values.update(changes)
    payload = OrderIntent(**values)
    return Envelope.create(payload, key=payload.key, ts=10 * HOUR_MS + n, source="test")


def bar(hour: int, close: float, symbol: str = "BTC/USDT", volume: float = 50.0) -> Envelope[Any]:
    return candle_envelope(symbol=symbol, open_time=hour * HOUR_MS, open=close, high=close, low=close,
                           close=close, volume=volume)


def decisions(out: list[Envelope[Event]]) -> list[RiskDecision]:
    return [e.payload for e in out if isinstance(e.payload, RiskDecision)]


def breakdowns(out: list[Envelope[Event]]) -> list[RiskBreakdown]:
    return [e.payload for e in out if isinstance(e.payload, RiskBreakdown)]


def fill(decision_id: str, quantity: str, price: str, ts: int, symbol: str = "BTC/USDT") -> Envelope[Event]:
    cid = client_order_id(decision_id)
    payload = OrderFilled(trade_id=f"{cid}-1", client_order_id=cid, exchange="binance", symbol=symbol,
                          side="buy", price=D(price), quantity=D(quantity), fee=D("0"), fee_asset="USDT",
                          liquidity="taker", filled_quantity=D(quantity), leaves_quantity=D("0"), ts_event=ts)
    return Envelope.create(payload, key=f"binance:{symbol}", ts=ts, source="execution",
                           discriminator=payload.trade_id)


def order_update(decision_id: str, status: str, quantity: str, ts: int) -> Envelope[Event]:
    payload = OrderUpdated(client_order_id=client_order_id(decision_id), decision_id=decision_id,
                           exchange="binance", symbol="BTC/USDT", side="buy", order_type="market",
                           time_in_force="GTC", quantity=D(quantity), status=status, filled_quantity=D("0"),
                           filled_notional=D("0"), seq=2, ts_event=ts)
    return Envelope.create(payload, key="binance:BTC/USDT", ts=ts, source="execution", discriminator=status)


# ---- the kill switch ----


def switch(engaged: bool, at: int, reason: str) -> Envelope[Event]:
    return Envelope.create(KillSwitchChanged(engaged=engaged, actor="cli:alice", reason=reason, at=at),
                           key="kill_switch", ts=at, source="cli")


def test_the_kill_switch_rejects_every_intent_until_released_even_after_a_restart() -> None:
    risk = core()
    risk.handle(bar(0, 100.0))
    assert decisions(risk.handle(intent(1)))[0].verdict == "approved"
    risk.handle(switch(True, HOUR_MS, "exchange incident"))
    for n, changes in ((2, {}), (3, {"side": "sell", "reduce_only": True})):
        (rejected,) = decisions(risk.handle(intent(n, **changes)))
        assert rejected.verdict == "rejected"
        why = "kill switch on since 1970-01-01T01:00:00Z (cli:alice: exchange incident)"
        assert rejected.reasons == [why]

    restarted = RiskCore(risk.risk, PAPER, risk.state())
    assert decisions(restarted.handle(intent(4)))[0].verdict == "rejected"
    restarted.handle(switch(False, 2 * HOUR_MS, "incident over"))
    assert decisions(restarted.handle(intent(5)))[0].verdict != "rejected"


def test_an_operators_normal_mode_resets_the_breaker_and_its_own_trip_read_back_changes_nothing() -> None:
    risk = core(max_drawdown=D("0.1"))
    trip = RiskModeChanged(mode="risk_off", actor="risk", reason="drawdown", at=5)
    assert risk.engine.apply(trip)
    assert not risk.engine.apply(trip)  # its own event, read back from risk.control
    assert risk.engine.state.risk_off
    risk.handle(Envelope.create(RiskModeChanged(mode="normal", actor="ops", reason="reviewed", at=6),
                                key="risk_mode", ts=6, source="api"))
    assert not risk.engine.state.risk_off
    assert risk.engine.state.peak_equity is None  # re-anchored at the next valuation


# ---- pending orders ----


def test_intents_repeated_before_any_fill_never_approve_past_the_symbol_limit() -> None:
    risk = core()  # 25 % of 10,000 in one instrument; 1 % risk over a stop 5 away = 20 units = 2,000
    risk.handle(bar(0, 100.0))
    approved = [d for n in range(1, 6) for d in decisions(risk.handle(intent(n))) if d.verdict != "rejected"]
    exposure = sum((d.size * d.entry_price for d in approved), D(0))  # type: ignore[operator]
    assert exposure == D("2500")  # 2,000 then the 500 left; without pending it would be 5 x 2,000
    assert [d.size for d in approved] == [D("20"), D("5")]
    assert "counts 1 pending order(s) not filled yet as held" in approved[1].reasons
    last = decisions(risk.handle(intent(6)))[0]
    assert last.verdict == "rejected"
    assert "max_symbol_exposure" in last.reasons[0]

    # The first order fills: the position replaces its pending quantity, the room stays used up.
    risk.handle(fill("i1", "20", "100", 11 * HOUR_MS))
    assert decisions(risk.handle(intent(7)))[0].verdict == "rejected"
    # The second ends unfilled (cancelled): its room comes back.
    risk.handle(order_update("i2", "cancelled", "5", 12 * HOUR_MS))
    (again,) = decisions(risk.handle(intent(8)))
    assert (again.verdict, again.size) == ("resized", D("5"))
    assert not any("pending" in reason for reason in again.reasons)  # nothing is pending any more
    assert set(risk.pending) == {client_order_id("i8")}
    assert RiskCore(risk.risk, PAPER, risk.state()).pending == risk.pending  # kept across a restart


def test_pending_orders_count_towards_max_open_positions() -> None:
    risk = core(max_open_positions=2, max_symbol_exposure=D("0.1"))
    for symbol in ("A/USDT", "B/USDT", "C/USDT"):
        risk.handle(bar(0, 100.0, symbol=symbol))
    symbols = ("A/USDT", "B/USDT", "C/USDT")
    answers = [decisions(risk.handle(intent(n, symbol=s)))[0] for n, s in enumerate(symbols, 1)]
    assert [d.verdict for d in answers] == ["resized", "resized", "rejected"]  # none has filled yet
    assert answers[2].reasons == ["2 positions are open, max_open_positions is 2: no new instrument"]


# ---- the breakdown ----


def test_the_breakdown_after_a_fill_matches_a_hand_computation() -> None:
    risk = core(breakdown_window=3, breakdown_every_candles=0)
    btc = [100.0, 110.0, 99.0, 108.9]
    eth = [10.0, 10.5, 10.0, 10.5]
    for hour, (b, e) in enumerate(zip(btc, eth, strict=True)):
        assert risk.handle(bar(hour, b, volume=2.0)) == []  # fills only: no breakdown on candles
        risk.handle(bar(hour, e, symbol="ETH/USDT", volume=100.0))
    risk.handle(fill("x", "10", "100", 4 * HOUR_MS))
    (breakdown,) = breakdowns(risk.handle(fill("y", "50", "10", 4 * HOUR_MS, symbol="ETH/USDT")))

    # by hand: 10 BTC at 108.9 = 1,089; 50 ETH at 10.5 = 525; cash 10,000 - 1,000 - 500 = 8,500
    assert breakdown.equity == D("10114.0")
    assert breakdown.gross_exposure == breakdown.net_exposure == D("1614.0")
    assert breakdown.leverage == pytest.approx(1614 / 10114)
    assert breakdown.concentration_hhi == pytest.approx((1089 / 1614) ** 2 + (525 / 1614) ** 2)
    assert breakdown.largest_share == pytest.approx(1089 / 1614)
    r_btc = [math.log(110 / 100), math.log(99 / 110), math.log(108.9 / 99)]
    r_eth = [math.log(10.5 / 10), math.log(10 / 10.5), math.log(10.5 / 10)]
    hourly_year = math.sqrt(24 * 365)
    btc_risk, eth_risk = breakdown.holdings
    assert btc_risk.volatility == pytest.approx(_std(r_btc) * hourly_year)
    assert eth_risk.volatility == pytest.approx(_std(r_eth) * hourly_year)
    weights = (1089 / 10114, 525 / 10114)
    combined = [weights[0] * a + weights[1] * b for a, b in zip(r_btc, r_eth, strict=True)]
    assert breakdown.volatility == pytest.approx(_std(combined) * hourly_year)
    assert breakdown.correlation == pytest.approx(_pearson(r_btc, r_eth))
    # liquidity: notional over the traded value of the window's last 3 candles
    assert btc_risk.liquidity == pytest.approx(1089 / (2 * (110 + 99 + 108.9)))
    assert eth_risk.liquidity == pytest.approx(525 / (100 * (10.5 + 10 + 10.5)))
    assert breakdown.liquidity == max(btc_risk.liquidity, eth_risk.liquidity)  # type: ignore[type-var]


def test_the_breakdown_is_published_every_n_candles_too() -> None:
    risk = core(breakdown_every_candles=3)
    published = [len(breakdowns(risk.handle(bar(hour, 100.0 + hour)))) for hour in range(7)]
    assert published == [0, 0, 1, 0, 0, 1, 0]
    assert risk.handle(bar(6, 106.0)) == []  # a candle seen before counts once


def test_returns_line_up_on_the_candles_every_instrument_has() -> None:
    closes = {"a": [(0, 1.0), (1, 2.0), (2, 4.0), (3, 8.0)], "b": [(1, 1.0), (3, 3.0)]}
    lined = aligned_log_returns(closes, window=5)
    assert lined["a"].tolist() == pytest.approx([math.log(4.0)])  # times 1 and 3 only
    assert lined["b"].tolist() == pytest.approx([math.log(3.0)])
    assert aligned_log_returns({"a": closes["a"]}, window=2)["a"].tolist() == pytest.approx([math.log(2)] * 2)


def _std(values: list[float]) -> float:
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def _pearson(xs: list[float], ys: list[float]) -> float:
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    cov = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    return cov / math.sqrt(sum((x - mx) ** 2 for x in xs) * sum((y - my) ** 2 for y in ys))


def test_helpers_agree_with_numpy() -> None:  # the hand computation above is itself checked
    xs, ys = [0.1, -0.2, 0.05, 0.3], [0.2, -0.1, 0.0, 0.25]
    assert _std(xs) == pytest.approx(float(np.std(xs, ddof=1)))
    assert _pearson(xs, ys) == pytest.approx(float(np.corrcoef(xs, ys)[0, 1]))


# ---- saved state ----


def test_the_saved_state_stays_small_and_a_restart_values_the_portfolio_as_before(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("agents.risk.IDS_KEPT", 5)
    risk = core(max_symbol_exposure=D("1"), max_total_exposure=D("1"), max_open_positions=100)
    risk.handle(bar(0, 100.0))
    for n in range(1, 13):
        risk.handle(intent(n))
        risk.handle(fill(f"i{n}", "1", "100", 10 * HOUR_MS + n))
    risk.handle(bar(20, 110.0))
    state = risk.state()
    assert state["decided"] == [f"i{n}" for n in range(8, 13)]  # the newest five, oldest first
    assert len(state["accounts"]["paper"]["ledger"]["applied"]) == 5  # the newest fills' ids, not every fill
    assert "fills" not in state

    restarted = RiskCore(risk.risk, PAPER, orjson.loads(orjson.dumps(state)))  # as saved to Redis
    assert restarted.book.portfolio(21 * HOUR_MS) == risk.book.portfolio(21 * HOUR_MS)
    assert restarted.book.portfolio(21 * HOUR_MS).equity == D("10120")  # 12 units bought at 100, marked 110
    # Recent inputs read again after the restart change nothing.
    assert restarted.handle(intent(12)) == []
    assert restarted.handle(fill("i12", "1", "100", 10 * HOUR_MS + 12)) == []
    assert restarted.state() == state


def test_a_state_saved_with_its_fills_before_the_ledger_was_restores_the_same_portfolio() -> None:
    risk = core()
    risk.handle(bar(0, 100.0))
    risk.handle(intent(1))
    risk.handle(fill("i1", "20", "100", 11 * HOUR_MS))
    risk.handle(bar(1, 104.0))
    now = risk.state()
    paper = now["accounts"]["paper"]
    saved = {"risk": paper["risk"], "pending": paper["pending"], "streams": now["streams"],  # as saved then
             "decided": now["decided"], "candles_since_breakdown": now["candles_since_breakdown"],
             "fills": [fill("i1", "20", "100", 11 * HOUR_MS).payload.model_dump(mode="json")]}
    restarted = RiskCore(risk.risk, PAPER, saved)
    assert restarted.book.portfolio(2 * HOUR_MS) == risk.book.portfolio(2 * HOUR_MS)
    assert restarted.book.portfolio(2 * HOUR_MS).equity == D("10080")


# ---- a live venue's account ----


def funded(amount: str, ts: int, n: int = 0) -> Envelope[Event]:
    payload = AccountTransfer(account="ccxt:binance", exchange="binance", asset="USDT", amount=D(amount),
                              transfer_id=f"ccxt:binance:opening:{n}", ts_event=ts)
    return Envelope.create(payload, key=payload.account, ts=ts, source="execution",
                           discriminator=payload.transfer_id)


def test_a_live_accounts_intents_are_sized_against_its_own_books_and_the_rest_stay_on_paper() -> None:
    venues = {"binance": "ccxt:binance"}  # execution.venue: ccxt:binance
    risk = RiskCore(RiskConfig(), PAPER, venues=venues)  # 1 % of equity at risk over a stop 5 away
    risk.handle(bar(0, 100.0))
    risk.handle(candle_envelope(exchange="kraken", open=100.0, high=100.0, low=100.0, close=100.0))
    before = decisions(risk.handle(intent(1)))[0]  # its balances not announced yet: nothing to size on
    assert (before.verdict, before.portfolio.portfolio) == ("rejected", "ccxt:binance")
    assert before.reasons == ["equity 0 is not positive: nothing can be put at risk"]
    on_paper = decisions(risk.handle(intent(2, exchange="kraken")))[0]
    assert (on_paper.portfolio.portfolio, on_paper.size) == ("paper", D("20"))  # 1 % of 10,000: 100 / 5

    risk.handle(switch(True, HOUR_MS, "drill"))
    (opened,) = breakdowns(risk.handle(funded("1000", 2 * HOUR_MS)))
    assert (opened.portfolio, opened.equity) == ("ccxt:binance", D("1000"))
    assert risk.handle(funded("1000", 2 * HOUR_MS)) == []  # announced again: booked once
    assert decisions(risk.handle(intent(3)))[0].reasons[0].startswith("kill switch on")  # every account
    risk.handle(switch(False, 3 * HOUR_MS, "drill over"))

    live = decisions(risk.handle(intent(4)))[0]
    assert (live.portfolio.portfolio, live.portfolio.equity, live.size) == ("ccxt:binance", D("1000"), D("2"))
    (after,) = breakdowns(risk.handle(fill("i4", "2", "100", 4 * HOUR_MS)))
    assert after.portfolio == "ccxt:binance"  # booked in the live account only
    assert risk.account("binance").book.ledger.positions["BTC/USDT"].quantity == D("2")
    assert "BTC/USDT" not in risk.ledger.positions
    assert set(risk.pending) == {client_order_id("i2")}  # the paper account's order, on kraken

    restarted = RiskCore(risk.risk, PAPER, orjson.loads(orjson.dumps(risk.state())), venues=venues)
    assert restarted.handle(funded("1000", 2 * HOUR_MS)) == []
    again = decisions(restarted.handle(intent(5)))[0]
    assert (again.portfolio.portfolio, again.portfolio.equity) == ("ccxt:binance", D("1000"))
    # execution.venue back to paper: the live account's books are kept, but binance trades on paper again
    back = RiskCore(risk.risk, PAPER, orjson.loads(orjson.dumps(risk.state())))
    assert decisions(back.handle(intent(6)))[0].portfolio.portfolio == "paper"


def test_a_live_fill_read_before_the_transfer_that_funds_its_account_still_lands_there() -> None:
    risk = RiskCore(RiskConfig(), PAPER, venues={"binance": "ccxt:binance"})
    risk.handle(bar(0, 100.0))
    risk.handle(fill("i1", "2", "100", HOUR_MS))  # fills and transfers come on two topics: any order
    risk.handle(funded("1000", HOUR_MS))
    books = risk.account("binance").book.ledger
    assert (books.cash["USDT"], books.positions["BTC/USDT"].quantity) == (D("800"), D("2"))
    assert risk.ledger.cash["USDT"] == D("10000")
