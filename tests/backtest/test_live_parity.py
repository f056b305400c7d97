"""Parity (a): a recording replayed through the live orchestrator, risk and execution agents gives the same
orders as the backtest of the same candles with the same config.

The agents are the real agent classes (their `handle`), wired in process in the order a real-time
deployment sees events: at each candle's close the execution agent trades the candle first (orders
placed at the previous close fill at its open), its fills and order changes reach the orchestrator and
the risk agent, then the candle reaches them, the orchestrator's intents go to risk and risk's
decisions to execution. On the broker the same events can interleave differently when a replay runs
at full speed (a fill report may reach the orchestrator after the next candle); the backtest is the
real-time order.

Two risk configs: one that keeps the execution agent's protective exits (stop-loss, take-profit,
trailing stop) out of reach, so every exit is the strategy's, and the default one, where all three
kinds of exit fire.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from agents.base import AgentDeps
from agents.execution import ExecutionAgent
from agents.market_data.core import MarketDataCore, Stream
from agents.market_data.files import bundled_candles, read_raw_candles
from agents.market_data.quality import RawCandle
from agents.orchestrator import OrchestratorAgent
from agents.risk import RiskAgent
from backtest.engine import default_market, run_backtest
from config import Settings
from config.settings import OrchestratorConfig, RiskConfig
from execution.paper_gateway import PaperConfig
from memory.ports import InMemoryStateStore
from topics.envelope import Envelope
from topics.market import CandleClosed
from topics.orders import OrderFilled, OrderUpdated
from topics.recording import RecordedMessage, RecordingWriter, open_recording
from topics.registry import MARKET_CANDLES
from topics.serialization import decode, encode, headers
from topics.trading import OrderIntent, RiskDecision

SYMBOL = "BTC/USDT"
ROWS = 700
FAST, SLOW = 5, 20
STRATEGIES = f"""version: 1
default: {{strategy: sma_cross, params: {{fast: {FAST}, slow: {SLOW}}}}}
handoff: {{mode: close, reduce_fraction: 0.5}}
regimes:
""" + "".join(f"  {regime}:\n    - strategy: sma_cross\n      params: {{fast: {FAST}, slow: {SLOW}}}\n"
              for regime in ("bull", "bear", "neutral", "high_volatility", "unknown"))


def market_candles() -> list[Envelope[CandleClosed]]:
    """The bundled BTC/USDT candles as the market data agent publishes them."""
    (source,) = [s for s in bundled_candles() if s.symbol == SYMBOL]
    frame = read_raw_candles(source.path).iloc[:ROWS]
    cols = (frame.open_time, frame.open, frame.high, frame.low, frame.close, frame.volume)
    raw = [RawCandle(int(t), o, h, lo, c, v) for t, o, h, lo, c, v in zip(*cols, strict=True)]
    stream = Stream("binance", SYMBOL, "1h", SYMBOL)
    return [e for e in MarketDataCore().run([(stream, raw)]) if isinstance(e.payload, CandleClosed)]


def recorded(path: Path, envelopes: list[Envelope[CandleClosed]]) -> list[Envelope[Any]]:
    """Write the candles as a recording of market.candles and read them back in replay order."""
    writer = RecordingWriter(path, created_by="test")
    for offset, env in enumerate(envelopes):
        writer.write(RecordedMessage(topic=MARKET_CANDLES.name, partition=0, offset=offset, timestamp=env.ts,
                                     key=env.key.encode(), value=encode(env), headers=tuple(headers(env))))
    writer.close({MARKET_CANDLES.name: 1})
    return [decode(MARKET_CANDLES, message.value) for message in open_recording(path).replay_order()]


RISKS = {
    # stops and targets out of reach: every exit is the strategy's
    "far-stops": RiskConfig(stop_atr=Decimal(40), take_profit_atr=Decimal(1000), trailing_atr=Decimal(0),
                            min_risk_reward=Decimal(0), risk_per_trade=Decimal("0.2"),
                            max_risk_per_trade=Decimal("0.2"), max_symbol_exposure=Decimal(1),
                            daily_loss_limit=Decimal("0.5"), max_drawdown=Decimal("0.9")),
    # the default risk config: ATR stops, targets and trailing stops close many trades
    "default": RiskConfig(),
}


def parity_settings(settings: Settings, tmp_path: Path, risk: RiskConfig) -> Settings:
    path = tmp_path / "strategies.yaml"
    path.write_text(STRATEGIES)
    orchestrator = OrchestratorConfig(strategies_path=path, signals=False)
    return settings.model_copy(update={"risk": risk, "orchestrator": orchestrator})


async def live_orders(settings: Settings, candles: list[Envelope[Any]]) -> list[OrderUpdated | OrderFilled]:
    """Every order event the execution agent publishes while the candles replay through the three agents."""
    def deps() -> AgentDeps:
        return AgentDeps(store=InMemoryStateStore(), settings=settings)

    orchestrator, risk, execution = OrchestratorAgent(deps()), RiskAgent(deps()), ExecutionAgent(deps())
    events: list[OrderUpdated | OrderFilled] = []

    async def report(produced: list[Envelope[Any]]) -> None:
        for env in produced:
            events.append(env.payload)
            if isinstance(env.payload, OrderFilled):
                await orchestrator.handle(env)  # execution.reports
            await risk.handle(env)  # execution.reports and orders

    for candle in candles:
        await report(list(await execution.handle(candle)))
        await risk.handle(candle)
        for intent in await orchestrator.handle(candle):
            if not isinstance(intent.payload, OrderIntent):
                continue  # regime changes and alerts
            for decision in await risk.handle(intent):
                if isinstance(decision.payload, RiskDecision):
                    await report(list(await execution.handle(decision)))
    return events


@pytest.mark.parametrize("risk", sorted(RISKS))
@pytest.mark.parametrize("mode", ["event", "lean"])
async def test_a_replay_through_the_live_agents_and_the_backtest_give_the_same_orders(
    settings: Settings, tmp_path: Path, mode: str, risk: str
) -> None:
    config = parity_settings(settings, tmp_path, RISKS[risk])
    candles = recorded(tmp_path / "recording", market_candles())
    live = await live_orders(config, candles)

    bars = pd.DataFrame([c.payload.model_dump(include={"open_time", "open", "high", "low", "close", "volume"})
                         for c in candles])
    paper = config.paper
    result = run_backtest(
        bars, "sma_cross", params={"fast": FAST, "slow": SLOW}, symbol=SYMBOL, exchange="binance",
        cash=paper.starting_cash, fee=paper.taker_fee_rate, slippage_bps=paper.slippage_bps,
        max_participation=paper.max_participation, impact_bps=PaperConfig().impact_bps,
        market=default_market(SYMBOL, "binance", paper),
        risk=config.risk, mode=mode,  # type: ignore[arg-type]
    )
    fills = [e for e in live if isinstance(e, OrderFilled)]
    assert len(fills) >= 10
    exits = {e.decision_id.split(":")[1] for e in live
             if isinstance(e, OrderUpdated) and ":" in e.decision_id}
    assert exits == (set() if risk == "far-stops" else {"take-profit", "trailing-stop"})
    assert [e.model_dump() for e in result.order_events] == [e.model_dump() for e in live]
    assert len(result.trades) >= 5
