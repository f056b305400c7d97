"""Risk and execution together on the real broker, Redis and Postgres: intents repeated before any
fill stay within the exposure limit, the stop-loss risk set closes the position, and the risk
breakdown follows the fills."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import orjson

from agents.execution import ExecutionAgent
from agents.risk import RiskAgent
from agents.runtime import AgentHost
from busio import Tail, end_offsets, produce, skip_history, until
from config import Settings
from infra import Endpoints
from topics.envelope import Envelope
from topics.market import CandleClosed
from topics.registry import (
    EXECUTION_REPORTS,
    MARKET_CANDLES,
    ORDERS,
    RISK_BREAKDOWN,
    RISK_DECISIONS,
)
from topics.trading import OrderIntent

T0 = 1_800_000_000_000 - 1_800_000_000_000 % 3_600_000
HOUR = 3_600_000




def bar(symbol: str, hour: int, *ohlc: float) -> Envelope[CandleClosed]:
    open_, high, low, close = ohlc
    candle = CandleClosed(exchange="binance", symbol=symbol, timeframe="1h", open_time=T0 + hour * HOUR,
                          close_time=T0 + (hour + 1) * HOUR, open=open_, high=high, low=low, close=close,
                          volume=1_000_000.0)
    return Envelope.create(candle, key=candle.key, ts=candle.close_time, source="test")


def mine(records: list[Any], symbol: str) -> list[dict[str, Any]]:
    return [orjson.loads(r.value)["payload"] for r in records if symbol in r.key.decode()]


def holding(breakdown: dict[str, Any], symbol: str) -> dict[str, Any] | None:
    return next((h for h in breakdown["holdings"] if h["symbol"] == symbol), None)


async def test_repeated_intents_stay_within_the_limit_and_the_stop_closes_the_position(
    settings: Settings, endpoints: Endpoints, kafka: dict[str, Any]
) -> None:
    symbol = f"E{uuid.uuid4().hex[:8].upper()}/USDT"
    for agent in (RiskAgent, ExecutionAgent):
        await skip_history(kafka, agent.name, agent.consumes)
    starts = {spec.name: await end_offsets(kafka, spec.name)
              for spec in (RISK_DECISIONS, ORDERS, EXECUTION_REPORTS, RISK_BREAKDOWN)}
    intents = [
        OrderIntent(decision_id=f"{symbol}-{n}", strategy="t", exchange="binance", symbol=symbol, side="buy",
                    stop_price=Decimal("95"), take_profit=Decimal("120"))
        for n in range(4)
    ]
    risk = AgentHost(RiskAgent, settings, endpoints)
    execution = AgentHost(ExecutionAgent, settings, endpoints)
    async with Tail(kafka, RISK_DECISIONS.name, starts[RISK_DECISIONS.name]) as decisions, \
            Tail(kafka, ORDERS.name, starts[ORDERS.name]) as orders, \
            Tail(kafka, EXECUTION_REPORTS.name, starts[EXECUTION_REPORTS.name]) as fills, \
            Tail(kafka, RISK_BREAKDOWN.name, starts[RISK_BREAKDOWN.name]) as breakdowns:
        try:
            for host in (risk, execution):
                await host.start()
                await host.wait_ready(30)
            await produce(kafka, MARKET_CANDLES.name, [bar(symbol, 0, 100, 100, 100, 100)])
            streams = risk.agent.core.streams  # type: ignore[union-attr]
            assert await until(lambda: f"binance:{symbol}" in streams)
            # Four intents at once: none can have filled before the next is decided.
            await produce(kafka, "strategy.intents", [
                Envelope.create(i, key=i.key, ts=T0 + HOUR, source="test", discriminator=i.decision_id)
                for i in intents
            ])
            assert await decisions.wait_for(lambda got: len(mine(got, symbol)) == 4)
            answers = mine(decisions.records, symbol)
            approved = [a for a in answers if a["verdict"] != "rejected"]
            assert await orders.wait_for(
                lambda got: sum(p["status"] == "submitted" for p in mine(got, symbol)) == len(approved)
            )
            await produce(kafka, MARKET_CANDLES.name, [bar(symbol, 1, 100, 101, 99, 100)])  # entries fill
            bought = sum((Decimal(a["size"]) for a in approved), Decimal(0))
            assert await fills.wait_for(
                lambda got: sum(Decimal(p["quantity"]) for p in mine(got, symbol)) == bought
            )
            await produce(kafka, MARKET_CANDLES.name, [bar(symbol, 2, 99, 99, 94, 95)])  # through the stop
            assert await orders.wait_for(lambda got: any(p["decision_id"].endswith(":stop-loss")
                                                         for p in mine(got, symbol)))
            await produce(kafka, MARKET_CANDLES.name, [bar(symbol, 3, 95, 96, 94, 95)])  # the exit fills
            assert await fills.wait_for(lambda got: any(p["side"] == "sell" for p in mine(got, symbol)))

            def opened_then_closed(got: list[Any]) -> bool:
                pictures = [orjson.loads(r.value)["payload"] for r in got]
                return (any(holding(p, symbol) is not None for p in pictures)
                        and holding(pictures[-1], symbol) is None)

            assert await breakdowns.wait_for(opened_then_closed)
        finally:
            for host in (risk, execution):
                await host.stop()

    equity = Decimal(answers[0]["portfolio"]["equity"])
    assert len(approved) >= 2
    exposure = sum((Decimal(a["size"]) * Decimal(a["entry_price"]) for a in approved), Decimal(0))
    assert exposure <= Decimal("0.25") * equity  # max_symbol_exposure; each alone would take 20 %
    rejected = [a for a in answers if a["verdict"] == "rejected"]
    assert rejected
    assert all("max_symbol_exposure" in a["reasons"][0] for a in rejected)

    sells = [p for p in mine(fills.records, symbol) if p["side"] == "sell"]
    assert sum(Decimal(p["quantity"]) for p in sells) == bought  # the whole position, once
    exits = {p["decision_id"] for p in mine(orders.records, symbol) if p["side"] == "sell"}
    assert len(exits) == 1
    assert exits.pop().endswith(":stop-loss")

    with_position = [orjson.loads(r.value)["payload"] for r in breakdowns.records]
    held = [holding(b, symbol) for b in with_position if holding(b, symbol) is not None]
    assert held
    assert Decimal(held[0]["notional"]) > 0  # type: ignore[index]
    assert holding(with_position[-1], symbol) is None  # the last fill closed it
