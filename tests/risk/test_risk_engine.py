"""The risk engine's decisions: sizing, stops, every limit, the breakers and the kill switch, with reasons."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from config.errors import ConfigError
from config.settings import RiskConfig, load_settings
from execution.market import Market
from execution.risk import MarketSnapshot, RiskEngine, RiskState
from topics.envelope import Envelope
from topics.registry import RISK_DECISIONS, STRATEGY_INTENTS
from topics.serialization import decode, encode
from topics.trading import OrderIntent, PortfolioSnapshot, PositionSnapshot, RiskDecision, StrategyStats

D = Decimal
T0 = 1_640_995_200_000  # 2022-01-01T00:00:00Z
HOUR, DAY = 3_600_000, 86_400_000
MARKET = MarketSnapshot(price=D("50000"), atr=D("500"))
WIDE = {"max_symbol_exposure": D("100"), "max_total_exposure": D("100"), "max_leverage": D("100")}


def config(**changes: Any) -> RiskConfig:
    return RiskConfig(**changes)


def intent(**changes: Any) -> OrderIntent:
    values: dict[str, Any] = {
        "decision_id": "trend-1", "strategy": "trend", "exchange": "binance", "symbol": "BTC/USDT",
        "side": "buy", "stop_price": D("49000"), "take_profit": D("53000"),
    }
    values.update(changes)
    return OrderIntent(**values)


def position(symbol: str, quantity: str, mark: str) -> PositionSnapshot:
    return PositionSnapshot(exchange="binance", symbol=symbol, quantity=D(quantity), mark_price=D(mark))


def portfolio(equity: str = "10000", ts: int = T0, *positions: PositionSnapshot) -> PortfolioSnapshot:
    return PortfolioSnapshot(ts=ts, equity=D(equity), positions=positions)


def decide(engine: RiskEngine, order: OrderIntent | None = None, book: PortfolioSnapshot | None = None,
           market: MarketSnapshot = MARKET) -> RiskDecision:
    return engine.evaluate(order or intent(), book or portfolio(), market)


# ---- sizing ----


def test_fixed_fraction_sizes_one_percent_of_equity_over_the_stop_distance() -> None:
    decision = decide(RiskEngine(config(**WIDE)))
    assert decision.verdict == "approved"
    assert decision.size == D("0.1")
    assert decision.risk_amount == D("100")
    assert decision.sizing == "fixed_fraction"
    assert (decision.stop_loss, decision.take_profit, decision.risk_reward) == (D("49000"), D("53000"), 3.0)
    assert decision.reasons[0].startswith("size 0.1 = equity 10000 x 1.00% at risk (risk_per_trade) / stop "
                                          "distance 1000")


def test_half_kelly_sizes_from_the_strategys_record() -> None:
    record = StrategyStats(win_rate=0.6, payoff=2.0, trades=50)  # full Kelly 0.4, half 0.2
    engine = RiskEngine(config(sizing="kelly", max_risk_per_trade=D("0.5"), **WIDE))
    decision = decide(engine, intent(stats=record))
    assert (decision.verdict, decision.sizing) == ("approved", "kelly")
    assert decision.size == D("2")  # 10000 x 0.2 / 1000
    assert decision.risk_amount == D("2000")
    capped = decide(RiskEngine(config(sizing="kelly", **WIDE)), intent(stats=record))
    assert capped.size == D("0.2")  # max_risk_per_trade 2 % caps Kelly's 20 %
    assert "max_risk_per_trade" in capped.reasons[0]


def test_kelly_caps_what_the_intent_asks_for() -> None:
    record = StrategyStats(win_rate=0.55, payoff=1.5, trades=40)  # full 0.25, x 0.1 = 2.5 %
    engine = RiskEngine(config(sizing="kelly", kelly_fraction=D("0.1"), max_risk_per_trade=D("0.5"), **WIDE))
    decision = decide(engine, intent(stats=record, risk_fraction=D("0.1")))
    assert decision.verdict == "resized"
    assert decision.size == D("0.25")  # 10000 x 0.025 / 1000
    assert any("the Kelly cap" in reason for reason in decision.reasons)


@pytest.mark.parametrize(
    ("stats", "reason"),
    [
        (StrategyStats(win_rate=0.3, payoff=1.0, trades=100),
         "Kelly fraction -0.4000 <= 0 (win rate 0.3, payoff 1.0)"),
        (StrategyStats(win_rate=0.7, payoff=2.0, trades=5),
         "at least kelly_min_trades 20 measured trades; trend has 5"),
        (None, "kelly sizing needs the strategy's measured win rate and payoff"),
    ],
)
def test_kelly_without_an_edge_or_a_record_rejects(stats: StrategyStats | None, reason: str) -> None:
    decision = decide(RiskEngine(config(sizing="kelly")), intent(stats=stats))
    assert decision.verdict == "rejected"
    assert decision.size == 0
    assert reason in decision.reasons[0]


def test_a_requested_size_above_the_risk_cap_is_resized() -> None:
    decision = decide(RiskEngine(config(**WIDE)), intent(size=D("1")))  # 1000 at risk = 10 %
    assert decision.verdict == "resized"
    assert decision.requested_size == D("1")
    assert decision.size == D("0.2")
    assert "the intent asked to risk 10.00%; max_risk_per_trade allows 2.00%" in decision.reasons
    within = decide(RiskEngine(config(**WIDE)), intent(size=D("0.15")))
    assert (within.verdict, within.size, within.sizing) == ("approved", D("0.15"), "requested")


# ---- stops, targets, risk-reward ----


def test_missing_stop_and_target_come_from_atr_multiples_with_a_trailing_stop() -> None:
    engine = RiskEngine(config(**WIDE))
    buy = decide(engine, intent(stop_price=None, take_profit=None))
    assert (buy.stop_loss, buy.take_profit, buy.risk_reward) == (D("49000"), D("51500"), 1.5)
    assert buy.trailing_stop is not None
    assert (buy.trailing_stop.distance, buy.trailing_stop.atr_multiple) == (D("1000"), D("2"))
    sell = decide(engine, intent(side="sell", stop_price=None, take_profit=None))
    assert (sell.stop_loss, sell.take_profit) == (D("51000"), D("48500"))
    assert any("stop 51000 = entry 50000 ∓ stop_atr 2 x ATR 500" in reason for reason in sell.reasons)
    untrailed = decide(RiskEngine(config(trailing_atr=D("0"), **WIDE)))
    assert untrailed.trailing_stop is None


@pytest.mark.parametrize(
    ("changes", "market", "reason"),
    [
        ({"stop_price": None}, MarketSnapshot(price=D("50000")), "intent has no stop and there is no ATR"),
        ({"take_profit": D("50500")}, MARKET, "risk-reward 0.50 is below min_risk_reward 1.5"),
        ({"stop_price": D("50500")}, MARKET, "stop 50500 is not below the entry 50000 of a buy"),
        ({"side": "sell"}, MARKET, "stop 49000 is not above the entry 50000 of a sell"),
        ({"take_profit": D("48000"), "stop_price": D("49500")}, MARKET, "take profit 48000 is not above"),
    ],
)
def test_bad_stops_targets_and_poor_risk_reward_reject(
    changes: dict[str, Any], market: MarketSnapshot, reason: str
) -> None:
    decision = decide(RiskEngine(config(**WIDE)), intent(**changes), market=market)
    assert decision.verdict == "rejected"
    assert any(reason in line for line in decision.reasons), decision.reasons


def test_a_limit_intent_is_sized_at_its_own_price() -> None:
    order = intent(entry_type="limit", entry_price=D("49500"), stop_price=D("48500"), take_profit=D("52500"))
    decision = decide(RiskEngine(config(**WIDE)), order)
    assert decision.entry_price == D("49500")
    assert decision.size == D("0.1")


# ---- limits ----


def test_symbol_exposure_resizes_then_rejects_when_used_up() -> None:
    engine = RiskEngine(config())  # max_symbol_exposure 25 %: 2500 of 10000 at 50000 = 0.05 BTC
    cut = decide(engine)
    assert (cut.verdict, cut.size) == ("resized", D("0.05"))
    assert any("by max_symbol_exposure 0.25" in reason for reason in cut.reasons)
    full = decide(engine, book=portfolio("10000", T0, position("BTC/USDT", "0.05", "50000")))
    assert full.verdict == "rejected"
    assert full.reasons == ["max_symbol_exposure 0.25 x equity is used up: no room for more buy BTC/USDT"]


def test_net_exposure_limits_longs_and_shorts_together() -> None:
    engine = RiskEngine(config(max_total_exposure=D("0.5"), max_symbol_exposure=D("1"), max_leverage=D("10")))
    eth = position("ETH/USDT", "2", "2000")  # 4000 long
    cut = decide(engine, book=portfolio("10000", T0, eth))
    assert (cut.verdict, cut.size) == ("resized", D("0.02"))  # (5000 - 4000) / 50000
    assert any("by max_total_exposure" in reason for reason in cut.reasons)
    full = decide(engine, book=portfolio("10000", T0, position("ETH/USDT", "2.5", "2000")))
    assert full.verdict == "rejected"
    assert "max_total_exposure 0.5 x equity is used up" in full.reasons[0]
    hedge = decide(engine, intent(side="sell", stop_price=D("51000"), take_profit=D("47000")),
                   book=portfolio("10000", T0, position("ETH/USDT", "2.5", "2000")))
    assert hedge.verdict == "approved"  # a short lowers the net exposure


def test_leverage_counts_gross_exposure() -> None:
    engine = RiskEngine(config(max_leverage=D("0.5"), max_symbol_exposure=D("1"), max_total_exposure=D("10")))
    book = portfolio("10000", T0, position("ETH/USDT", "1.5", "2000"), position("SOL/USDT", "-20", "100"))
    decision = decide(engine, book=book)  # net 1000 is fine, gross 5000 is the limit
    assert decision.verdict == "rejected"
    assert decision.reasons == ["max_leverage 0.5 x equity is used up: no room for more buy BTC/USDT"]


def test_max_open_positions_blocks_a_new_instrument_only() -> None:
    engine = RiskEngine(config(max_open_positions=2, **WIDE))
    book = portfolio("10000", T0, position("ETH/USDT", "1", "2000"), position("SOL/USDT", "10", "100"))
    blocked = decide(engine, book=book)
    assert blocked.reasons == ["2 positions are open, max_open_positions is 2: no new instrument"]
    more_eth = intent(symbol="ETH/USDT", stop_price=D("1900"), take_profit=D("2300"))
    added = engine.evaluate(more_eth, book, MarketSnapshot(price=D("2000")))
    assert added.verdict == "approved"


def test_venue_step_and_minimums_apply_last() -> None:
    rules = Market(exchange="binance", symbol="BTC/USDT", tick_size=D("0.01"), step_size=D("0.001"),
                   min_quantity=D("0.001"), min_notional=D("5"))
    market = MarketSnapshot(price=D("50000"), atr=D("500"), rules=rules)
    decision = decide(RiskEngine(config(**WIDE)), book=portfolio("12345"), market=market)
    assert decision.size == D("0.123")  # 0.12345 floored to the 0.001 step
    tiny = decide(RiskEngine(config(**WIDE)), book=portfolio("40"), market=market)  # 0.0004 BTC
    assert tiny.reasons == ["size 0.000 is below the minimum quantity 0.001"]
    small = decide(RiskEngine(config(**WIDE)), book=portfolio("400"))  # 0.004 BTC = 200 notional: fine
    assert small.size == D("0.004")
    dust = decide(RiskEngine(config(min_notional=D("500"), **WIDE)), book=portfolio("400"))
    assert dust.reasons == ["order value 200.00 is below the minimum notional 500"]


# ---- daily loss, drawdown breaker, kill switch ----


def test_daily_loss_limit_stops_new_risk_for_the_rest_of_the_utc_day() -> None:
    engine = RiskEngine(config(**WIDE))
    assert engine.observe(portfolio("10000", T0 + HOUR)) is None
    down = decide(engine, book=portfolio("9400", T0 + 5 * HOUR))
    assert down.verdict == "rejected"
    assert down.reasons == [
        "daily loss 6.00% of the UTC day's first equity 10000 reached daily_loss_limit 5.00%: "
        "no new risk until 00:00 UTC"
    ]
    assert decide(engine, book=portfolio("9600", T0 + 6 * HOUR)).verdict == "approved"  # 4 % down: fine
    next_day = decide(engine, book=portfolio("9400", T0 + DAY))
    assert next_day.verdict == "approved"
    assert engine.state.day_start_equity == D("9400")


def test_drawdown_breaker_goes_risk_off_until_reset() -> None:
    engine = RiskEngine(config(**WIDE))
    engine.observe(portfolio("10000", T0))
    engine.observe(portfolio("12000", T0 + DAY))  # the peak
    tripped = engine.observe(portfolio("9500", T0 + 2 * DAY))  # 20.8 % below the peak, first value of its day
    assert tripped is not None
    assert (tripped.mode, tripped.actor, tripped.at) == ("risk_off", "risk", T0 + 2 * DAY)
    assert tripped.reason == "drawdown 20.83% from peak equity 12000 reached max_drawdown 20.00%"
    assert engine.observe(portfolio("9500", T0 + 2 * DAY + HOUR)) is None  # trips once
    blocked = decide(engine, book=portfolio("11000", T0 + 3 * DAY))  # recovered, still off
    assert blocked.verdict == "rejected"
    assert blocked.reasons[0].startswith("risk-off since 2022-01-03T00:00:00Z: drawdown 20.83%")
    book = portfolio("11000", T0 + 3 * DAY, position("BTC/USDT", "0.1", "50000"))
    closing = decide(engine, intent(side="sell", reduce_only=True), book=book)
    assert (closing.verdict, closing.size, closing.sizing) == ("approved", D("0.1"), "reduce_only")

    reset = engine.reset_risk_off(actor="alice", at=T0 + 3 * DAY + HOUR, reason="reviewed the losses")
    assert reset is not None
    assert (reset.mode, reset.actor) == ("normal", "alice")
    assert engine.reset_risk_off(actor="alice", at=T0 + 3 * DAY + HOUR, reason="again") is None
    assert decide(engine, book=portfolio("11000", T0 + 3 * DAY + 2 * HOUR)).verdict == "approved"
    assert engine.state.peak_equity == D("11000")  # re-anchored at the reset


def test_kill_switch_rejects_everything_until_released() -> None:
    engine = RiskEngine(config(**WIDE))
    engaged = engine.engage_kill_switch(actor="ops", at=T0 + HOUR, reason="exchange incident")
    assert engaged is not None
    assert (engaged.engaged, engaged.actor, engaged.at) == (True, "ops", T0 + HOUR)
    assert engine.engage_kill_switch(actor="ops", at=T0 + 2 * HOUR, reason="again") is None
    book = portfolio("10000", T0 + 3 * HOUR, position("BTC/USDT", "0.1", "50000"))
    for order in (intent(), intent(side="sell", reduce_only=True)):
        decision = decide(engine, order, book)
        assert decision.verdict == "rejected"
        assert decision.reasons == ["kill switch on since 2022-01-01T01:00:00Z (ops: exchange incident)"]

    restored = RiskEngine(engine.config, RiskState.model_validate_json(engine.state.model_dump_json()))
    assert decide(restored, book=book).verdict == "rejected"  # the state survives a restart

    released = engine.release_kill_switch(actor="ops", at=T0 + 4 * HOUR, reason="incident over")
    assert released is not None
    assert not released.engaged
    assert engine.release_kill_switch(actor="ops", at=T0 + 4 * HOUR, reason="again") is None
    assert decide(engine, book=book).verdict == "approved"


def test_reduce_only_never_exceeds_the_position_and_needs_one() -> None:
    engine = RiskEngine(config())
    book = portfolio("10000", T0, position("BTC/USDT", "0.5", "50000"))
    close = decide(engine, intent(side="sell", reduce_only=True, size=D("2")), book)
    assert (close.verdict, close.size, close.risk_amount) == ("resized", D("0.5"), D("0"))
    assert "resized from 2 to 0.5: never more than the position" in close.reasons
    wrong_way = decide(engine, intent(side="buy", reduce_only=True), book)
    assert wrong_way.reasons == ["reduce-only buy but there is no short BTC/USDT position to reduce"]


# ---- the wire ----


def test_decisions_and_intents_carry_money_as_json_strings() -> None:
    order = intent(size=D("0.15"), trace={"signal": "ema_cross_up", "score": 0.7})
    decision = decide(RiskEngine(config(**WIDE)), order)
    intent_env = Envelope.create(order, key=order.key, ts=T0, source="trend")
    decision_env = Envelope.create(decision, key=decision.key, ts=T0, source="risk", caused_by=intent_env)
    wire = orjson.loads(encode(decision_env))
    assert wire["payload"]["size"] == "0.15"
    assert wire["payload"]["stop_loss"] == "49000"
    assert wire["payload"]["portfolio"]["equity"] == "10000"
    assert orjson.loads(encode(intent_env))["payload"]["take_profit"] == "53000"
    assert decode(RISK_DECISIONS, encode(decision_env)) == decision_env
    assert decode(STRATEGY_INTENTS, encode(intent_env)) == intent_env
    assert decision_env.causation_id == intent_env.event_id


def test_inconsistent_intents_and_decisions_are_refused() -> None:
    with pytest.raises(ValueError, match="a limit intent needs entry_price"):
        intent(entry_type="limit")
    with pytest.raises(ValueError, match="give size or risk_fraction, not both"):
        intent(size=D("1"), risk_fraction=D("0.01"))
    with pytest.raises(ValueError, match="positions must be one per instrument"):
        portfolio("1", T0, position("BTC/USDT", "1", "1"), position("BTC/USDT", "2", "1"))
    decision = decide(RiskEngine(config(**WIDE)))
    with pytest.raises(ValueError, match="rejected decision has size 0"):
        RiskDecision(**{**decision.model_dump(), "verdict": "rejected"})
    with pytest.raises(ValueError, match="at least 1 item"):
        RiskDecision(**{**decision.model_dump(), "reasons": []})


# ---- properties over random intents and portfolios ----

SYMBOLS = ("BTC/USDT", "ETH/USDT", "SOL/USDT", "XRP/USDT")
money = st.decimals(min_value=D("1"), max_value=D("100000"), places=2)


@st.composite
def situations(draw: st.DrawFn) -> tuple[RiskConfig, OrderIntent, PortfolioSnapshot, MarketSnapshot]:
    price = draw(money)
    side = draw(st.sampled_from(["buy", "sell"]))
    sign = 1 if side == "buy" else -1
    stop_gap = draw(st.decimals(min_value=D("0.001"), max_value=D("0.5"), places=3))
    target_gap = draw(st.decimals(min_value=D("0.001"), max_value=D("2"), places=3))
    with_stop, with_target = (draw(st.sampled_from([True, True, True, False])) for _ in range(2))
    order = intent(
        decision_id=f"d-{draw(st.integers(0, 10**6))}", symbol=draw(st.sampled_from(SYMBOLS)), side=side,
        stop_price=price * (1 - sign * stop_gap) if with_stop else None,
        take_profit=max(price * (1 + sign * target_gap), D("0.01")) if with_target else None,
        size=draw(st.none() | st.decimals(min_value=D("0.0001"), max_value=D("1000"), places=4)),
        reduce_only=draw(st.sampled_from([False, False, False, True])),
    )
    holdings = draw(st.lists(
        st.tuples(st.sampled_from(SYMBOLS), st.decimals(min_value=-2, max_value=2, places=3), money),
        max_size=4, unique_by=lambda row: row[0],
    ))
    book = PortfolioSnapshot(
        ts=T0 + draw(st.integers(0, 10)) * HOUR,
        equity=draw(st.decimals(min_value=D("1000"), max_value=D("10000000"), places=2)
                    | st.decimals(min_value=D("-1000"), max_value=D("1000"), places=2)),
        positions=tuple(position(symbol, str(quantity), str(mark)) for symbol, quantity, mark in holdings),
    )
    atr = draw(st.none() | st.decimals(min_value=D("0.001"), max_value=D("0.3"), places=3).map(price.__mul__))
    limits = config(
        max_symbol_exposure=draw(st.sampled_from([D("0.1"), D("0.25"), D("1"), D("3")])),
        max_open_positions=draw(st.integers(1, 5)),
        min_risk_reward=draw(st.sampled_from([D("0"), D("1"), D("1.5")])),
    )
    return limits, order, book, MarketSnapshot(price=price, atr=atr)


@settings(max_examples=400, deadline=None)
@given(situations(), st.booleans())
def test_every_decision_has_reasons_and_approvals_respect_the_limits(
    situation: tuple[RiskConfig, OrderIntent, PortfolioSnapshot, MarketSnapshot], killed: bool
) -> None:
    limits, order, book, market = situation
    engine = RiskEngine(limits)
    if killed:
        engine.engage_kill_switch(actor="test", at=T0, reason="drill")
    decision = engine.evaluate(order, book, market)
    assert decision.reasons
    assert all(reason.strip() for reason in decision.reasons)
    assert decision.decision_id == order.decision_id
    if killed:
        assert decision.verdict == "rejected"
        assert decision.reasons[0].startswith("kill switch on since")
    if decision.verdict == "rejected":
        return
    held = book.position(order.key)
    quantity = held.quantity if held is not None else D(0)
    if order.reduce_only:
        assert decision.size <= abs(quantity)
        return
    assert decision.risk_amount <= limits.max_risk_per_trade * book.equity
    sign = 1 if order.side == "buy" else -1
    entry = decision.entry_price
    assert entry is not None
    before, after = abs(quantity) * entry, abs(quantity + sign * decision.size) * entry
    assert after <= max(limits.max_symbol_exposure * book.equity, before)  # within the limit, or reducing
    assert decision.size * entry >= limits.min_notional
    assert decision.risk_reward is not None
    assert decision.risk_reward >= float(limits.min_risk_reward)


def test_risk_config_comes_from_the_environment_and_names_bad_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CRYPTIQ_CONFIG", raising=False)
    monkeypatch.setenv("CRYPTIQ_RISK_MAX_DRAWDOWN", "0.1")
    monkeypatch.setenv("CRYPTIQ_RISK_SIZING", "kelly")
    risk = load_settings().risk
    assert (risk.max_drawdown, risk.sizing, risk.risk_per_trade) == (D("0.1"), "kelly", D("0.01"))
    monkeypatch.setenv("CRYPTIQ_RISK_MAX_RISK_PER_TRADE", "0.001")
    expected = r"risk.max_risk_per_trade = '0.001' .*at least risk_per_trade \(0.01\)"
    with pytest.raises(ConfigError, match=expected):
        load_settings()
