"""`cryptiq kill-switch` against the risk and execution agents on the real broker, Redis and Postgres.

Engaging cancels the resting order at the venue (published on `orders` and stored), the risk
agent rejects intents naming who engaged it and why, the execution agent refuses decisions even
after a restart, and a release lets both trade again.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

from agents.execution import ExecutionAgent
from agents.risk import RiskAgent
from agents.runtime import AgentHost
from busio import Tail, end_offsets, produce, skip_history, until
from config import Settings
from execution.order import client_order_id
from infra import Endpoints
from memory.database import create_engine
from memory.orders import OrderStore
from topics.envelope import Envelope
from topics.market import CandleClosed
from topics.registry import ORDERS, RISK_DECISIONS, STRATEGY_INTENTS
from topics.trading import OrderIntent, PortfolioSnapshot, RiskDecision

CRYPTIQ = Path(sys.executable).with_name("cryptiq")
T0 = 1_700_000_000_000


def cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, CRYPTIQ_HOME=str(settings.home))
    return subprocess.run([str(CRYPTIQ), "kill-switch", *args], env=env, capture_output=True, text=True,
                          timeout=60, check=False)




def payloads(records: list[Any], symbol: str) -> list[dict[str, Any]]:
    return [orjson.loads(r.value)["payload"] for r in records if symbol in r.key.decode()]


def answers(records: list[Any], symbol: str) -> list[dict[str, Any]]:
    """Risk's decisions on the test's intents (the tests' own decisions share the topic)."""
    return [p for p in payloads(records, symbol) if p["decision_id"].startswith(f"{symbol}-i")]


def decision(symbol: str, n: int, price: str = "50") -> Envelope[RiskDecision]:
    payload = RiskDecision(
        decision_id=f"{symbol}-d{n}", strategy="t", exchange="binance", symbol=symbol, side="buy",
        entry_type="limit", entry_price=Decimal(price), verdict="approved", size=Decimal("1"),
        risk_amount=Decimal("5"), stop_loss=Decimal(price) - 5, reasons=["test"],
        portfolio=PortfolioSnapshot(ts=T0, equity=Decimal("100000")),
    )
    return Envelope.create(payload, key=payload.key, ts=T0 + n, source="test")


def intent(symbol: str, n: int) -> Envelope[OrderIntent]:
    payload = OrderIntent(decision_id=f"{symbol}-i{n}", strategy="t", exchange="binance", symbol=symbol,
                          side="buy", entry_type="limit", entry_price=Decimal("100"),
                          stop_price=Decimal("95"), take_profit=Decimal("115"))
    return Envelope.create(payload, key=payload.key, ts=T0 + 100 + n, source="test")


async def test_the_kill_switch_cancels_orders_and_blocks_intents_and_decisions_until_released(
    settings: Settings, endpoints: Endpoints, kafka: dict[str, Any]
) -> None:
    symbol = f"K{uuid.uuid4().hex[:8].upper()}/USDT"
    for agent in (RiskAgent, ExecutionAgent):
        await skip_history(kafka, agent.name, agent.consumes)
    orders_start = await end_offsets(kafka, ORDERS.name)
    decisions_start = await end_offsets(kafka, RISK_DECISIONS.name)
    candle = CandleClosed(exchange="binance", symbol=symbol, timeframe="1h", open_time=T0 - 3_600_000,
                          close_time=T0, open=100, high=101, low=99, close=100, volume=1000)
    await produce(kafka, "market.candles", [Envelope.create(candle, key=candle.key, ts=T0, source="test")])

    risk = AgentHost(RiskAgent, settings, endpoints)
    execution = AgentHost(ExecutionAgent, settings, endpoints)
    hosts = [risk, execution]
    async with Tail(kafka, ORDERS.name, orders_start) as orders, \
            Tail(kafka, RISK_DECISIONS.name, decisions_start) as decisions:
        try:
            for host in hosts:
                await host.start()
                await host.wait_ready(30)

            def status_of(n: int) -> Callable[[list[Any]], list[dict[str, Any]]]:
                cid = client_order_id(f"{symbol}-d{n}")
                return lambda got: [p for p in payloads(got, symbol) if p["client_order_id"] == cid]

            def reached(n: int, status: str) -> Callable[[list[Any]], bool]:
                return lambda got: any(p["status"] == status for p in status_of(n)(got))

            await produce(kafka, RISK_DECISIONS.name, [decision(symbol, 1)])  # rests at 50: far below
            assert await orders.wait_for(reached(1, "submitted"))

            engaged = cli(settings, "engage", "--reason", "test incident", "--actor", "tester")
            assert engaged.returncode == 0, engaged.stderr
            assert "ENGAGED by tester: test incident" in engaged.stdout
            assert await orders.wait_for(reached(1, "cancelled"))
            (cancelled,) = [p for p in status_of(1)(orders.records) if p["status"] == "cancelled"]
            assert cancelled["reasons"] == ["kill switch engaged by tester: test incident"]
            status = cli(settings, "status")
            assert status.returncode == 0, status.stderr
            assert "ENGAGED since" in status.stdout
            assert "by tester: test incident" in status.stdout

            # Risk rejects intents, naming who engaged the switch and why.
            assert await until(lambda: risk.agent.core.engine.state.kill_switch_on)  # type: ignore[union-attr]
            await produce(kafka, STRATEGY_INTENTS.name, [intent(symbol, 1)])
            assert await decisions.wait_for(lambda got: len(answers(got, symbol)) == 1)
            (rejected,) = answers(decisions.records, symbol)
            assert rejected["verdict"] == "rejected"
            assert "(tester: test incident)" in rejected["reasons"][0]

            # A decision that reaches execution anyway is refused there, also after a restart.
            await execution.stop()
            execution = AgentHost(ExecutionAgent, settings, endpoints)
            hosts[1] = execution
            await execution.start()
            await execution.wait_ready(30)
            await produce(kafka, RISK_DECISIONS.name, [decision(symbol, 2)])
            assert await orders.wait_for(reached(2, "rejected"))
            (refused,) = [p for p in status_of(2)(orders.records) if p["status"] == "rejected"]
            assert "kill switch on since" in refused["reasons"][0]
            assert "(tester: test incident)" in refused["reasons"][0]

            released = cli(settings, "release", "--reason", "incident over", "--actor", "tester")
            assert released.returncode == 0, released.stderr
            core = risk.agent.core  # type: ignore[union-attr]
            assert await until(lambda: not core.engine.state.kill_switch_on)
            assert await until(lambda: not execution.agent.state.kill_switch_on)  # type: ignore[union-attr]
            await produce(kafka, RISK_DECISIONS.name, [decision(symbol, 3)])
            assert await orders.wait_for(reached(3, "submitted"))
            await produce(kafka, STRATEGY_INTENTS.name, [intent(symbol, 2)])
            assert await decisions.wait_for(lambda got: len(answers(got, symbol)) == 2)
            assert answers(decisions.records, symbol)[1]["verdict"] != "rejected"
        finally:
            for host in hosts:
                await host.stop()  # commits and checkpoints: the order changes reach Postgres

    again = cli(settings, "release", "--reason", "twice")
    assert again.returncode != 0
    assert again.stderr.strip().splitlines() == [
        "error: the kill switch is not engaged: nothing to release (see `cryptiq kill-switch status`)"
    ]
    assert "released at" in cli(settings, "status").stdout
    assert cli(settings, "engage", "--reason", " ").returncode != 0

    engine = create_engine(endpoints.postgres_url)
    try:
        store = OrderStore(engine)
        first = await store.get(client_order_id(f"{symbol}-d1"))
        second = await store.get(client_order_id(f"{symbol}-d2"))
    finally:
        await engine.dispose()
    assert first is not None
    assert first.status == "cancelled"
    assert second is not None
    assert second.status == "rejected"
    assert "kill switch" in second.reasons[0]
