"""The risk and execution agents on the real broker, Redis and Postgres, with real bundled candles.

Intents and decisions are published directly (plain aiokafka); each test uses its own symbols.
"""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from decimal import ROUND_CEILING, Decimal
from pathlib import Path
from typing import Any

import orjson

from agents.execution import ExecutionAgent
from agents.market_data.core import MarketDataCore, Stream
from agents.market_data.files import bundled_candles, read_raw_candles
from agents.market_data.quality import RawCandle
from agents.risk import RiskAgent
from agents.runtime import AgentHost
from busio import collect, end_offsets, produce, skip_history
from config import Settings
from execution.order import client_order_id
from execution.paper_account import ACCOUNT
from infra import Endpoints
from memory.database import create_engine
from memory.ledger import LedgerStore
from memory.orders import OrderStore
from topics.envelope import Envelope
from topics.market import CandleClosed
from topics.registry import EXECUTION_REPORTS, ORDERS, RISK_DECISIONS
from topics.trading import OrderIntent, PortfolioSnapshot, RiskDecision

CRYPTIQ = Path(sys.executable).with_name("cryptiq")


def candles(symbol: str, rename: str, rows: int) -> list[Envelope[CandleClosed]]:
    (source,) = [s for s in bundled_candles() if s.symbol == symbol]
    frame = read_raw_candles(source.path).iloc[:rows]
    cols = (frame.open_time, frame.open, frame.high, frame.low, frame.close, frame.volume)
    raw = [RawCandle(int(t), o, h, lo, c, v) for t, o, h, lo, c, v in zip(*cols, strict=True)]
    stream = Stream("binance", rename, "1h", symbol)
    return [e for e in MarketDataCore().run([(stream, raw)]) if isinstance(e.payload, CandleClosed)]



def bodies(records: list[Any], symbol: str) -> list[dict[str, Any]]:
    return [orjson.loads(r.value) for r in records if symbol in r.key.decode()]


async def test_every_intent_gets_one_decision_with_reasons(
    settings: Settings, endpoints: Endpoints, kafka: dict[str, Any]
) -> None:
    symbol = f"R{uuid.uuid4().hex[:8].upper()}/USDT"
    await skip_history(kafka, RiskAgent.name, RiskAgent.consumes)
    start = await end_offsets(kafka, RISK_DECISIONS.name)
    limit = OrderIntent(decision_id=f"{symbol}-1", strategy="t", exchange="binance", symbol=symbol,
                        side="buy", entry_type="limit", entry_price=Decimal("100"), stop_price=Decimal("95"),
                        take_profit=Decimal("115"))
    market = OrderIntent(decision_id=f"{symbol}-2", strategy="t", exchange="binance", symbol=symbol,
                         side="buy")
    intents = [Envelope.create(i, key=i.key, ts=1_700_000_000_000 + n, source="test")
               for n, i in enumerate((limit, market))]
    host = AgentHost(RiskAgent, settings, endpoints)
    await host.start()
    try:
        await host.wait_ready(30)
        await produce(kafka, "strategy.intents", intents + intents)  # each twice: still one answer
        records = await collect(kafka, RISK_DECISIONS.name, start=start, timeout=20,
                                until=lambda got: len(bodies(got, symbol)) >= 2)
        await asyncio.sleep(1.0)  # room for a wrong second answer to show up
        records = await collect(kafka, RISK_DECISIONS.name, start=start, timeout=1, until=lambda got: False)
    finally:
        await host.stop()
    decisions = {b["payload"]["decision_id"]: RiskDecision.model_validate(b["payload"])
                 for b in bodies(records, symbol)}
    assert len(bodies(records, symbol)) == 2
    first, second = decisions[limit.decision_id], decisions[market.decision_id]
    assert first.verdict in ("approved", "resized")
    assert first.size > 0
    assert first.reasons
    # 1 % of 100,000 at risk over a 5 stop = 200, capped by the 25 % symbol exposure: 250 x 100 > 25,000
    assert first.risk_amount <= Decimal("1000")
    assert first.size * 100 <= Decimal("25000")
    assert second.verdict == "rejected"
    assert "no price" in second.reasons[0]


async def test_a_decision_becomes_one_order_filled_by_candles_even_across_a_restart(
    settings: Settings, endpoints: Endpoints, kafka: dict[str, Any]
) -> None:
    symbol = f"X{uuid.uuid4().hex[:8].upper()}/USDT"
    bars = candles("BTC/USDT", symbol, 5)
    decision = RiskDecision(
        decision_id=f"{symbol}-d1", strategy="t", exchange="binance", symbol=symbol, side="buy",
        entry_type="market", entry_price=Decimal(repr(bars[0].payload.open)), verdict="approved",
        size=Decimal("0.5"), risk_amount=Decimal("100"), reasons=["test"],
        portfolio=PortfolioSnapshot(ts=bars[0].ts, equity=Decimal("100000")),
    )
    env = Envelope.create(decision, key=decision.key, ts=bars[0].payload.open_time, source="test")
    cid = client_order_id(decision.decision_id)
    await skip_history(kafka, ExecutionAgent.name, ExecutionAgent.consumes)
    orders_start = await end_offsets(kafka, ORDERS.name)
    fills_start = await end_offsets(kafka, EXECUTION_REPORTS.name)

    host = AgentHost(ExecutionAgent, settings, endpoints)
    await host.start()
    try:
        await host.wait_ready(30)
        await produce(kafka, RISK_DECISIONS.name, [env, env])
        await collect(kafka, ORDERS.name, start=orders_start, timeout=20,
                      until=lambda got: any(b["payload"]["status"] == "submitted"
                                            for b in bodies(got, symbol)))
    finally:
        await host.stop()  # placed, not filled: a new process must not place it again

    host = AgentHost(ExecutionAgent, settings, endpoints)
    await host.start()
    try:
        await host.wait_ready(30)
        await produce(kafka, RISK_DECISIONS.name, [env])
        await produce(kafka, "market.candles", bars)
        fills = await collect(kafka, EXECUTION_REPORTS.name, start=fills_start, timeout=20,
                              until=lambda got: sum(Decimal(b["payload"]["quantity"])
                                                    for b in bodies(got, symbol)) >= Decimal("0.5"))
    finally:
        await host.stop()

    records = await collect(kafka, ORDERS.name, start=orders_start, timeout=2, until=lambda got: False)
    updates = bodies(records, symbol)
    assert {b["payload"]["client_order_id"] for b in updates} == {cid}
    assert sorted({b["payload"]["seq"] for b in updates if b["payload"]["status"] == "new"}) == [0]
    assert sum(1 for b in updates if b["payload"]["status"] == "submitted") == 1
    fill_payloads = [b["payload"] for b in bodies(fills, symbol)]
    assert fill_payloads
    assert sum(Decimal(f["quantity"]) for f in fill_payloads) == Decimal("0.5")
    for fill in fill_payloads:
        notional = Decimal(fill["price"]) * Decimal(fill["quantity"]) * Decimal("0.001")
        assert Decimal(fill["fee"]) == notional.quantize(Decimal("1e-8"), rounding=ROUND_CEILING)

    engine = create_engine(endpoints.postgres_url)
    try:
        stored = await OrderStore(engine).get(cid)
        books = await LedgerStore(engine).state(ACCOUNT)
    finally:
        await engine.dispose()
    assert stored is not None
    assert stored.status == "filled"
    assert books is not None
    assert symbol in books.state["positions"]
    usdt = books.state["assets"]["USDT"]
    # value is conserved: cash + positions at mark + fees == deposits + realised + unrealised
    left = Decimal(usdt["equity"]) + Decimal(usdt["fees_paid"])
    right = Decimal(usdt["net_deposits"]) + Decimal(usdt["realised_pnl"]) + Decimal(usdt["unrealised_pnl"])
    assert left == right
    assert Decimal(usdt["fees_paid"]) > 0

    env_vars = dict(os.environ, CRYPTIQ_HOME=str(settings.home))
    process = await asyncio.create_subprocess_exec(
        str(CRYPTIQ), "pnl", env=env_vars, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    assert symbol in out.decode()
    assert "realised P/L" in out.decode()
