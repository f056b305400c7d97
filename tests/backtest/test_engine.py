"""The backtest engine: next-candle fills, fees, slippage, conservation, no look-ahead, and one answer
from its three paths (event, lean, vector)."""

from __future__ import annotations

import pickle
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import Field

from agents.market_data.files import bundled_candles, read_candles
from backtest import vector
from backtest.engine import BacktestError, run_backtest
from backtest.result import BacktestResult, TradeLog, iso_utc
from config.settings import RiskConfig
from execution.market import Market
from strategies.base import (
    IndicatorStrategy,
    Param,
    Position,
    StrategyParams,
    close_intent,
    make_intent,
    param_space,
)
from strategies.sma_cross import SmaCross
from topics.market import CandleClosed
from topics.orders import OrderFilled
from topics.trading import OrderIntent

HOUR = 3_600_000
CASH = Decimal(100_000)
FEE = Decimal("0.001")
MODES = ("event", "lean", "vector")
BINANCE_BTC = Market("backtest", "BTC/USDT", tick_size=Decimal("0.01"), step_size=Decimal("0.00001"),
                     min_quantity=Decimal("0.00001"), min_notional=Decimal(5))
# Coarse rules: a tick that is not a power of ten, prices off it, sells near the minimum notional.
COARSE = Market("backtest", "BTC/USDT", tick_size=Decimal("0.05"), step_size=Decimal("0.001"),
                min_quantity=Decimal("0.002"), min_notional=Decimal(50))


def frame(closes: list[float], *, spread: float = 1.0, volume: float = 1e6, gap: float = 0.0) -> pd.DataFrame:
    """Hourly candles: each opens at the previous close plus `gap` and spans `spread` around its body."""
    close = np.asarray(closes, dtype=float)
    open_ = np.concatenate([[close[0]], close[:-1] + gap])
    return pd.DataFrame({
        "open_time": np.arange(len(close), dtype=np.int64) * HOUR, "open": open_,
        "high": np.maximum(open_, close) + spread, "low": np.minimum(open_, close) - spread,
        "close": close, "volume": np.full(len(close), volume),
    })


def bundled(symbol: str = "BTC/USDT") -> pd.DataFrame:
    (source,) = [s for s in bundled_candles() if s.symbol == symbol]
    return read_candles(source.path).drop(columns="symbol")


def run(candles: pd.DataFrame, strategy: Any = "sma_cross", **kwargs: Any) -> BacktestResult:
    kwargs.setdefault("params", {"fast": 2, "slow": 3} if strategy == "sma_cross" else None)
    return run_backtest(candles, strategy, symbol="BTC/USDT", cash=kwargs.pop("cash", CASH),
                        fee=kwargs.pop("fee", FEE), **kwargs)


class ScriptParams(StrategyParams):
    size: float = Field(0.0, ge=0.0, le=1e9)  # 0: all in


class Script(IndicatorStrategy):
    """Buys at the candles in `BUY`, sells everything at the candles in `SELL` (by index)."""

    name: ClassVar[str] = "script"
    Params: ClassVar[type[StrategyParams]] = ScriptParams
    space: ClassVar[tuple[Param, ...]] = param_space(ScriptParams)
    BUY: ClassVar[frozenset[int]] = frozenset()
    SELL: ClassVar[frozenset[int]] = frozenset()
    _fields = ("seen",)

    def _setup(self) -> None:
        self.seen = 0

    def on_candle(self, candle: CandleClosed, signals: object, position: Position) -> list[OrderIntent]:
        i, self.seen = self.seen, self.seen + 1
        size = self.params.size  # type: ignore[attr-defined]
        if i in self.BUY:
            fields = {"size": Decimal(repr(size))} if size else {}
            return [make_intent(self.name, self.params, candle, action=f"buy{i}", side="buy", reason="script",
                                signals={}, **fields)]
        if i in self.SELL and position.quantity > 0:
            return [close_intent(self.name, self.params, candle, position, action=f"sell{i}", reason="script",
                                 signals={})]
        return []


def script(buy: set[int], sell: set[int], size: float = 0.0) -> Script:
    cls = type("Scripted", (Script,), {"BUY": frozenset(buy), "SELL": frozenset(sell)})
    return cls(ScriptParams(size=size))


def fills(result: BacktestResult) -> list[OrderFilled]:
    return [e for e in result.order_events if isinstance(e, OrderFilled)]


# ---- timing, fees, slippage -----------------------------------------------------------------------


def test_a_decision_at_a_close_fills_at_the_next_candles_open() -> None:
    candles = frame([100, 101, 102, 103, 104, 105, 106, 107])
    result = run(candles, script({2}, {5}), mode="event")
    (trade,) = result.trades
    assert trade.entry_time == 3 * HOUR  # decided at candle 2's close, filled at candle 3's open
    assert trade.entry_price == Decimal(repr(float(candles.open[3])))
    assert trade.exit_time == 6 * HOUR
    assert trade.exit_price == Decimal(repr(float(candles.open[6])))
    assert [f.ts_event for f in fills(result)] == [4 * HOUR, 7 * HOUR]  # the venue knows at the close
    assert result.position.iloc[2] == 0
    assert result.position.iloc[3] > 0
    assert result.position.iloc[6] == 0


def test_sma_cross_enters_the_candle_after_the_cross() -> None:
    closes = [10, 10, 10, 9, 8, 7, 8, 9, 10, 11, 12, 11, 10, 9, 8, 7, 7]
    result = run(frame(closes), mode="lean")
    fast = pd.Series(closes).rolling(2).mean()
    slow = pd.Series(closes).rolling(3).mean()
    up = next(i for i in range(1, len(closes)) if fast[i] > slow[i] and fast[i - 1] < slow[i - 1])
    down = next(i for i in range(up + 1, len(closes)) if fast[i] < slow[i] and fast[i - 1] > slow[i - 1])
    (trade,) = result.trades
    assert (trade.entry_time, trade.exit_time) == ((up + 1) * HOUR, (down + 1) * HOUR)


def test_a_decision_at_the_last_candle_never_fills() -> None:
    result = run(frame([100, 101, 102]), script({2}, set()))
    assert result.trades == []
    assert result.final_equity == CASH


def test_fees_are_charged_per_side_on_the_fill_value() -> None:
    candles = frame([100, 101, 102, 103, 104, 105])
    result = run(candles, script({0}, {3}), mode="event")
    buy, sell = fills(result)
    for fill in (buy, sell):
        exact = fill.price * fill.quantity * FEE
        assert fill.fee == exact.quantize(Decimal("1e-8"), rounding=ROUND_CEILING)
    (trade,) = result.trades
    assert trade.fees == buy.fee + sell.fee == result.fees_paid
    # all in: the cash buys as much as it can with the fee on top, and no more
    assert buy.price * buy.quantity + buy.fee <= CASH
    assert CASH - (buy.price * buy.quantity + buy.fee) < buy.price * Decimal("1e-8") * 2
    assert trade.pnl == sell.price * sell.quantity - buy.price * buy.quantity - trade.fees
    assert result.final_equity == CASH + trade.pnl


def test_slippage_moves_market_fills_against_the_order_within_the_candle() -> None:
    candles = frame([100, 101, 102, 103, 104, 105], spread=5.0)
    bps = Decimal(25)
    for mode in MODES[:2]:
        result = run(candles, script({0}, {3}), slippage_bps=bps, mode=mode)
        buy, sell = fills(result)
        tick = Decimal("1e-8")
        opens = [Decimal(repr(float(price))) for price in candles.open]
        expected_buy = (opens[1] * (1 + bps / 10_000)).quantize(tick, ROUND_CEILING)
        expected_sell = (opens[4] * (1 - bps / 10_000)).quantize(tick, ROUND_FLOOR)
        assert (buy.price, sell.price) == (expected_buy, expected_sell)
        assert buy.price * buy.quantity + buy.fee <= CASH  # sized at the worst price slippage allows


def test_slippage_never_fills_outside_the_candle() -> None:
    candles = frame([100, 100, 100, 100, 100], spread=0.01)
    result = run(candles, script({0}, {2}), slippage_bps=Decimal(500), mode="event")
    buy, sell = fills(result)
    assert buy.price == Decimal("100.01")
    assert sell.price == Decimal("99.99")


def test_a_sized_intent_is_ordered_as_given_and_the_exit_never_exceeds_the_position() -> None:
    result = run(frame([100, 101, 102, 103, 104, 105]), script({0, 1}, {3}, size=0.5))
    assert [f.quantity for f in fills(result)] == [Decimal("0.5"), Decimal("0.5"), Decimal("1.0")]
    assert result.position.iloc[-1] == 0


def test_volume_caps_a_fill_and_the_rest_fills_on_later_candles() -> None:
    candles = frame([100] * 8, volume=400.0)
    for mode in ("event", "lean", "auto"):
        result = run(candles, script({0}, set()), mode=mode, max_participation=Decimal("0.5"))
        quantities = [f.quantity for f in fills(result)]
        assert quantities[:4] == [Decimal(200)] * 4  # half of each candle's 400
        assert sum(quantities) == result.trades[0].size
        assert result.engine == ("event" if mode == "event" else "lean")  # vector declines partial fills


# ---- one answer from every path -------------------------------------------------------------------


def assert_same(a: BacktestResult, b: BacktestResult) -> None:
    assert a.trades == b.trades
    assert a.final_equity == b.final_equity
    assert a.fees_paid == b.fees_paid
    np.testing.assert_allclose(a.equity.to_numpy(), b.equity.to_numpy(), rtol=1e-12)
    np.testing.assert_array_equal(a.position.to_numpy(), b.position.to_numpy())
    assert a.report_json() | {"engine": None} == b.report_json() | {"engine": None}


@pytest.mark.parametrize("symbol", ["BTC/USDT", "DOGE/USDT"])
@pytest.mark.parametrize("slippage", [Decimal(0), Decimal(7)])
def test_event_lean_and_vector_paths_agree_on_real_candles(symbol: str, slippage: Decimal) -> None:
    candles = bundled(symbol)
    results = [run_backtest(candles, "sma_cross", params={"fast": 20, "slow": 50}, symbol=symbol, cash=CASH,
                            fee=FEE, slippage_bps=slippage, mode=mode) for mode in MODES]
    assert [r.engine for r in results] == list(MODES)
    assert len(results[0].trades) > 20
    assert_same(results[0], results[1])
    assert_same(results[0], results[2])


def test_the_risk_engine_sizes_like_the_live_risk_agent_on_both_event_paths() -> None:
    candles = bundled().iloc[:3000]
    risk = RiskConfig()
    event, lean = (run(candles, params={"fast": 20, "slow": 50}, risk=risk, mode=mode) for mode in MODES[:2])
    assert_same(event, lean)
    assert event.risk_decisions == lean.risk_decisions
    verdicts = {d.verdict for d in event.risk_decisions}
    assert verdicts & {"approved", "resized"}
    assert event.trades
    all_in = run(candles, params={"fast": 20, "slow": 50}, mode="lean")
    assert event.trades[0].size < all_in.trades[0].size / 2  # 1% risk at 2 ATR, capped at 25% exposure


def test_the_vector_engine_refuses_a_risk_config() -> None:
    with pytest.raises(BacktestError, match="risk config"):
        run(frame([100, 101, 102]), risk=RiskConfig(), mode="vector")


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000), fast=st.integers(2, 8), extra=st.integers(1, 20),
    slippage=st.sampled_from([Decimal(0), Decimal(3), Decimal("12.5")]),
    fee=st.sampled_from([Decimal(0), Decimal("0.001"), Decimal("0.0025")]),
    market=st.sampled_from([None, BINANCE_BTC, COARSE]),
)
def test_paths_agree_and_value_is_conserved_on_random_walks(  # noqa: PLR0917 - hypothesis's draws
    seed: int, fast: int, extra: int, slippage: Decimal, fee: Decimal, market: Market | None
) -> None:
    rng = np.random.default_rng(seed)
    closes = list(100 * np.exp(np.cumsum(rng.normal(0, 0.01, 400))))
    candles = frame(closes, spread=0.3, gap=float(rng.normal(0, 0.05)))
    params = {"fast": fast, "slow": fast + extra}
    results = [run(candles, params=params, fee=fee, slippage_bps=slippage, mode=mode, market=market)
               for mode in MODES]
    assert [r.engine for r in results] == list(MODES)
    event = results[0]
    for other in results[1:]:
        assert_same(event, other)
    # conservation: the final equity is the cash plus every trade's net P/L (an open one at the last close)
    assert event.final_equity == CASH + sum((t.pnl for t in event.trades), Decimal(0))
    assert event.fees_paid == sum((t.fees for t in event.trades), Decimal(0))
    assert (event.equity > 0).all()
    cash_after = event.equity - event.position * event.closes
    assert (cash_after > -1e-6).all()  # all-in never spends more than the cash
    assert event.equity.iloc[-1] == pytest.approx(float(event.final_equity), rel=1e-12)


# ---- no look-ahead --------------------------------------------------------------------------------


@pytest.mark.parametrize(("mode", "risk"), [*((mode, None) for mode in MODES), ("lean", RiskConfig())])
def test_changing_candles_after_t_changes_nothing_up_to_t(mode: str, risk: RiskConfig | None) -> None:
    candles = bundled().iloc[:2000].reset_index(drop=True)
    base = run(candles, params={"fast": 10, "slow": 30}, mode=mode, risk=risk)
    cut = 1200
    t_close = int(candles.open_time[cut]) + HOUR
    altered = candles.copy()
    rng = np.random.default_rng(3)
    scale = rng.uniform(0.7, 1.3, len(candles) - cut - 1)
    for column in ("open", "high", "low", "close"):
        altered.loc[cut + 1:, column] = candles[column].to_numpy()[cut + 1:] * scale
    other = run(altered, params={"fast": 10, "slow": 30}, mode=mode, risk=risk)

    def before(result: BacktestResult) -> tuple[Any, ...]:
        trades = [t for t in result.trades if t.entry_time <= candles.open_time[cut]]
        closed = [(t.entry_time, t.entry_price, t.size) for t in trades]
        exits = [(t.exit_time, t.exit_price) for t in trades if t.exit_time is not None
                 and t.exit_time <= candles.open_time[cut]]
        return closed, exits, result.equity.iloc[:cut + 1].tolist(), result.position.iloc[:cut + 1].tolist()

    assert before(base) == before(other)
    assert len(before(base)[0]) > 5
    if mode != "vector":
        early = [e for e in base.order_events if e.ts_event <= t_close]
        assert early == [e for e in other.order_events if e.ts_event <= t_close]
    assert base.trades != other.trades  # the change did matter after t


# ---- inputs ---------------------------------------------------------------------------------------


def test_a_used_strategy_instance_runs_from_a_fresh_copy() -> None:
    candles = bundled().iloc[:1500]
    strategy = SmaCross(SmaCross.Params(fast=5, slow=20))
    first = run_backtest(candles, strategy, symbol="BTC/USDT", cash=CASH, fee=FEE, mode="lean")
    second = run_backtest(candles, strategy, symbol="BTC/USDT", cash=CASH, fee=FEE, mode="lean")
    assert first.trades == second.trades
    assert first.params == {"fast": 5, "slow": 20}


@pytest.mark.parametrize(("change", "message"), [
    (lambda f: f.iloc[::-1], "sorted by open_time"),
    (lambda f: f.drop(columns="volume"), "missing volume"),
    (lambda f: f.assign(low=f.high + 1), "low <= open"),
    (lambda f: f.iloc[:1], "at least 2 candles"),
])
def test_bad_candles_are_one_clear_error(change: Any, message: str) -> None:
    with pytest.raises(BacktestError, match=message):
        run(change(frame([100, 101, 102, 103])))


def test_bad_arguments_are_clear_errors() -> None:
    candles = frame([100, 101, 102, 103])
    with pytest.raises(BacktestError, match="unknown strategy 'nope'"):
        run(candles, "nope")
    with pytest.raises(BacktestError, match="cash must be a positive Decimal"):
        run(candles, cash=Decimal(0))
    with pytest.raises(BacktestError, match=r"BASE/QUOTE|symbol"):
        run_backtest(candles, "sma_cross", symbol="BTCUSDT", cash=CASH, fee=FEE)


def test_the_report_has_exact_money_and_iso_utc_times() -> None:
    result = run(bundled().iloc[:2000], params={"fast": 20, "slow": 50})
    report = result.report_json()
    assert Decimal(report["final_equity"]) == result.final_equity  # type: ignore[arg-type]
    first = report["trades"][0]  # type: ignore[index]
    assert set(first) >= {"entry_time", "exit_time", "entry_price", "exit_price", "size", "fees", "pnl"}
    assert first["entry_time"] == iso_utc(result.trades[0].entry_time)
    assert first["entry_time"].endswith(":00:00Z")
    assert iso_utc(1641186000000) == "2022-01-03T05:00:00Z"
    assert result.equity.index.tz is not None
    assert len(result.equity) == len(result.position) == len(result.closes) == 2000


class ShortScript(Script):
    """Sells `size` short at candle 1, buys it back (reduce-only) at candle 4, then flips long at 6."""

    name: ClassVar[str] = "short_script"

    def on_candle(self, candle: CandleClosed, signals: object, position: Position) -> list[OrderIntent]:
        i, self.seen = self.seen, self.seen + 1
        size = Decimal(repr(self.params.size))  # type: ignore[attr-defined]
        if i == 1:
            return [make_intent(self.name, self.params, candle, action="short", side="sell", reason="script",
                                signals={}, size=size)]
        if i == 4:
            return [close_intent(self.name, self.params, candle, position, action="cover", reason="script",
                                 signals={})]
        if i == 6:  # a buy larger than nothing: opens a long
            return [make_intent(self.name, self.params, candle, action="long", side="buy", reason="script",
                                signals={}, size=size * 2)]
        return []


def test_a_short_round_trip_books_a_short_trade_with_its_pnl() -> None:
    candles = frame([100, 100, 98, 96, 94, 92, 92, 93, 94])
    result = run(candles, ShortScript(ScriptParams(size=10.0)), mode="event")
    short, long_ = result.trades
    assert (short.side, short.size) == ("short", Decimal(10))
    assert (short.entry_time, short.exit_time) == (2 * HOUR, 5 * HOUR)
    gross = (short.entry_price - short.exit_price) * short.size  # type: ignore[operator]
    assert short.pnl == gross - short.fees
    assert long_.side == "long"
    assert long_.exit_time is None  # still open: marked at the last close
    assert long_.pnl == (Decimal(94) - long_.entry_price) * long_.size - long_.fees
    assert result.final_equity == CASH + short.pnl + long_.pnl
    lean = run(candles, ShortScript(ScriptParams(size=10.0)), mode="lean")
    assert_same(result, lean)


def test_ties_between_the_averages_are_called_as_the_streaming_strategy_calls_them() -> None:
    # fast == slow on the flat stretch: the compiled signals add and trim the running totals in the
    # streaming SMA's order, so they see the same floats and the same ties.
    flat_then_moving = [100.0] * 12 + [101, 102, 103, 102, 101, 100, 99, 98, 99, 100, 101, 102]
    candles = frame(flat_then_moving)
    auto = run(candles, mode="auto")
    assert auto.engine == "vector"
    assert auto.trades
    assert_same(auto, run(candles, mode="event"))


class Ambiguous(SmaCross):
    """A strategy whose own vector form declines (raises `AmbiguousSignal`)."""

    name: ClassVar[str] = "ambiguous_cross"

    @classmethod
    def vector_signals(cls, params: StrategyParams, closes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise vector.AmbiguousSignal("too close to call")


def test_a_vector_form_that_declines_falls_back_to_the_lean_path() -> None:
    candles = frame([100.0 + i % 7 for i in range(60)])
    declining = Ambiguous(SmaCross.Params(fast=2, slow=3))
    result = run(candles, declining, params=None, mode="auto")
    assert result.engine == "lean"
    assert result.trades
    assert_same(result, run(candles, declining, params=None, mode="event"))



@pytest.mark.parametrize(("market", "cash", "loop"), [
    (BINANCE_BTC, CASH, "compiled"),  # ticks of 0.01 and steps of 0.00001: every amount fits in 64 bits
    (None, CASH, "python"),  # the paper agents' 1e-8 ticks and steps: amounts in 1e-16 exceed 64 bits
])
def test_the_vector_path_books_in_64_bit_integers_or_in_python_integers_alike(
    market: Market | None, cash: Decimal, loop: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    loops: list[str] = []
    compiled = vector._book_compiled
    monkeypatch.setattr(vector, "_book_compiled", lambda *a: (loops.append("compiled"), compiled(*a))[1])
    python = vector._book
    monkeypatch.setattr(vector, "_book", lambda *a: (loops.append("python"), python(*a))[1])
    candles = bundled().iloc[:4000]
    kwargs: dict[str, Any] = {"params": {"fast": 20, "slow": 50}, "market": market, "cash": cash,
                              "slippage_bps": Decimal("2.5"), "fee": Decimal("0.00075")}
    fast = run(candles, mode="vector", **kwargs)
    assert loops[-1] == loop
    assert len(fast.trades) > 10
    assert_same(fast, run(candles, mode="event", **kwargs))


@pytest.mark.parametrize("mode", MODES)
def test_progress_is_reported_up_to_the_last_candle(mode: str) -> None:
    candles = bundled().iloc[:3000]
    seen: list[tuple[int, int]] = []
    run(candles, params={"fast": 20, "slow": 50}, mode=mode,
        progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (3000, 3000)
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)
    if mode != "vector":
        assert len(seen) > 100  # about 200 updates: a live progress bar


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), fast=st.integers(2, 6), extra=st.integers(1, 12),
       trailing=st.sampled_from([Decimal(0), Decimal(2)]))
def test_event_and_lean_paths_agree_through_the_risk_engine_and_its_exits(
    seed: int, fast: int, extra: int, trailing: Decimal
) -> None:
    rng = np.random.default_rng(seed)
    candles = frame(list(100 * np.exp(np.cumsum(rng.normal(0, 0.01, 300)))), spread=0.4)
    risk = RiskConfig(trailing_atr=trailing, max_symbol_exposure=Decimal(1), daily_loss_limit=Decimal("0.5"))
    event, lean = (run(candles, params={"fast": fast, "slow": fast + extra}, risk=risk, mode=mode)
                   for mode in MODES[:2])
    assert_same(event, lean)
    assert [e.model_dump() for e in event.order_events] == [e.model_dump() for e in lean.order_events]
    assert event.final_equity == CASH + sum((t.pnl for t in event.trades), Decimal(0))


class LimitScript(Script):
    """At candle 1: an all-in limit buy at 95 (size None); at candle 6: sell everything at market."""

    name: ClassVar[str] = "limit_script"

    def on_candle(self, candle: CandleClosed, signals: object, position: Position) -> list[OrderIntent]:
        i, self.seen = self.seen, self.seen + 1
        if i == 1:
            return [make_intent(self.name, self.params, candle, action="bid", side="buy", reason="script",
                                signals={}, entry_type="limit", entry_price=Decimal(95))]
        if i == 6 and position.quantity > 0:
            return [close_intent(self.name, self.params, candle, position, action="out", reason="script",
                                 signals={})]
        return []


def test_a_limit_intent_rests_and_fills_at_its_price_when_a_candle_trades_through_it() -> None:
    candles = frame([100, 99, 98, 96, 93, 97, 99, 100], spread=0.5)  # candle 4 trades through 95
    result = run(candles, LimitScript(ScriptParams()), mode="event")
    buy, sell = fills(result)
    assert (buy.price, buy.liquidity, buy.ts_event) == (Decimal(95), "maker", 5 * HOUR)
    assert buy.price * buy.quantity + buy.fee <= CASH  # all in at the limit price, fee included
    assert sell.ts_event == 8 * HOUR
    assert_same(result, run(candles, LimitScript(ScriptParams()), mode="lean"))


def test_a_trade_log_is_built_once_on_first_use_and_reads_as_its_list() -> None:
    result = run(bundled().iloc[:3000], params={"fast": 20, "slow": 50}, mode="vector")
    listed = run(bundled().iloc[:3000], params={"fast": 20, "slow": 50}, mode="lean").trades
    log = result.trades
    assert isinstance(log, TradeLog)
    calls: list[int] = []
    built = TradeLog(lambda: (calls.append(1), list(listed))[1], len(listed))
    assert len(built) == len(listed)
    assert not calls  # the count needs no Trade
    assert built == listed
    assert listed == built
    assert log == built
    assert built[0] == listed[0]
    assert built[-2:] == listed[-2:]
    assert list(built) == listed
    assert calls == [1]
    assert pickle.loads(pickle.dumps(result)).trades == listed
