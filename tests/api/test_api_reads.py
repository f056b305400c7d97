"""Read routes of the ops API on real data: the context in Redis, decisions, orders and the ledger in
Postgres, risk decisions and alerts on Kafka; /metrics, /health and the OpenAPI document."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from typing import Any

import httpx
from apitools import ApiUnderTest, bearer, risk_breakdown, sample_context
from prometheus_client.parser import text_string_to_metric_families

from busio import produce
from execution.market import Market
from execution.order import OrderRequest, client_order_id, create_order, fill, submit
from factories import candle
from memory.decision_log import DecisionLog, DecisionRecord
from memory.ledger import LedgerState, LedgerStore
from memory.orders import OrderStore
from strategies import STRATEGIES
from strategies.base import make_intent, make_params
from topics.alerting import AlertNotification
from topics.envelope import Envelope
from topics.registry import ALERT_NOTIFICATIONS, RISK_BREAKDOWN, RISK_DECISIONS
from topics.trading import PortfolioSnapshot, RiskDecision


async def _get(api: ApiUnderTest, path: str, user: str = "vera") -> Any:
    async with api.client() as client:
        response = await client.get(path, headers=bearer(await api.token(user)))
    assert response.status_code == 200, (path, response.text)
    return response.json()


async def _eventually(api: ApiUnderTest, path: str, check: Any, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        body = await _get(api, path)
        if check(body) or time.monotonic() > deadline:
            return body
        await asyncio.sleep(0.2)


async def test_state_agents_regimes_and_strategies_come_from_the_context_in_redis(api: ApiUnderTest) -> None:
    empty = await _get(api, "/state")
    assert empty["stored"] is False
    now_ms = int(api.clock() * 1000)
    await api.save_context(sample_context(as_of=now_ms - 2_000))

    state = await _get(api, "/state")
    assert state["stored"] is True
    assert state["context"]["streams"]["binance:BTC/USDT:1h"]["regime"] == "bull"

    agents = {a["agent"]: a for a in await _get(api, "/agents")}
    assert agents["technical"]["processed"] == 54_424
    assert agents["technical"]["lag"] == 3
    assert 1.5 < agents["technical"]["heartbeat_age_s"] < 30
    assert agents["technical"]["stale"] is False
    assert agents["risk"]["last_error"] == "RetriableError: postgres unreachable"

    regimes = await _get(api, "/regimes")
    assert [(r["stream"], r["regime"]) for r in regimes] == [("binance:BTC/USDT:1h", "bull")]

    strategies = await _get(api, "/strategies")
    assert strategies["streams"][0]["strategy"] == "sma_cross"
    assert strategies["streams"][0]["params"] == {"fast": 10, "slow": 30}
    assert strategies["streams"][0]["open_intents"][0]["decision_id"] == "dec-open-1"
    assert set(strategies["available"]) == set(STRATEGIES)

    api.clock.advance(3600)  # an hour without heartbeats: stale
    try:
        assert all(a["stale"] for a in await _get(api, "/agents"))
    finally:
        api.clock.advance(-3600)


async def test_positions_come_from_the_ledger(api: ApiUnderTest) -> None:
    books = {"assets": {"USDT": {"equity": "100050", "cash": "50000"}},
             "positions": {"binance:BTC/USDT": {"quantity": "0.5", "average_cost": "100000"}}}
    await LedgerStore(api.engine).append("paper", [], state=LedgerState(version=3, ts=1_700_000_000_000,
                                                                         state=books))
    positions = await _get(api, "/positions")
    assert positions["account"] == "paper"
    assert positions["as_of"] == 1_700_000_000_000
    assert positions["books"]["positions"]["binance:BTC/USDT"]["quantity"] == "0.5"


async def test_a_decision_and_its_flow_through_risk_orders_and_fills(api: ApiUnderTest) -> None:
    bar = candle(open_time=1_700_000_000_000 - 3_600_000, close=101.5)
    params = make_params(STRATEGIES["sma_cross"], {})
    intent = make_intent("sma_cross", params, bar, action="enter_long", side="buy",
                         reason="fast crossed above slow", signals={"fast": 101.0, "slow": 99.0})
    trace = {**intent.trace, "regime": "bull"}
    decision = DecisionRecord(id=intent.decision_id, agent="orchestrator", symbol="BTC/USDT",
                              ts=bar.close_time, kind="intent", input_ids=["candle-event"],
                              output_ids=["intent-event"],
                              reasons=["fast crossed above slow"], trace=trace)
    older = decision.model_copy(update={"id": "older-decision", "ts": bar.close_time - 3_600_000})
    await DecisionLog(api.engine).record_many([older, decision])

    listed = await _get(api, "/decisions?limit=10")
    assert [d["id"] for d in listed[:2]] == [decision.id, "older-decision"]  # newest first
    assert listed[0]["trace"]["candle"]["close"] == 101.5

    flow = await _get(api, f"/decisions/{decision.id}")
    steps = {step["stage"]: step for step in flow["steps"]}
    stages = ["candle", "signals", "intent", "risk", "orders", "fills"]
    assert [step["stage"] for step in flow["steps"]] == stages
    assert steps["candle"]["status"] == "done"
    assert steps["signals"]["detail"]["regime"] == "bull"
    assert steps["intent"]["detail"]["strategy"] == "sma_cross"
    assert steps["risk"]["status"] == "pending"
    assert steps["orders"]["status"] == "pending"

    # What followed: risk approves on Kafka, the execution agent's order and fill land in Postgres.
    risk = RiskDecision(
        decision_id=decision.id, strategy="sma_cross", exchange="binance", symbol="BTC/USDT", side="buy",
        entry_type="market", entry_price=Decimal("101.5"), verdict="approved", size=Decimal("0.25"),
        risk_amount=Decimal("50"), reasons=["fixed fraction: 1% of equity"],
        portfolio=PortfolioSnapshot(ts=bar.close_time, equity=Decimal("100000")),
    )
    await produce(api.kafka, RISK_DECISIONS.name, [
        Envelope.create(risk, key=risk.key, ts=bar.close_time, source="risk", discriminator=decision.id)
    ])
    market = Market("binance", "BTC/USDT", tick_size=Decimal("0.01"), step_size=Decimal("0.0001"),
                    min_quantity=Decimal("0.0001"), min_notional=Decimal("1"))
    order, created = create_order(OrderRequest(decision_id=decision.id, exchange="binance", symbol="BTC/USDT",
                                               side="buy", order_type="market", quantity=Decimal("0.25"),
                                               reference_price=Decimal("101.5")),
                                  market, now=bar.close_time)
    order, submitted = submit(order, now=bar.close_time)
    order, filled = fill(order, now=bar.close_time + 1, price=Decimal("101.6"), quantity=Decimal("0.25"),
                         fee=Decimal("0.0254"), fee_asset="USDT", liquidity="taker")
    await OrderStore(api.engine).record([*created, *submitted, *filled])

    flow = await _eventually(api, f"/decisions/{decision.id}",
                             lambda body: body["steps"][3]["detail"] is not None)  # risk read from Kafka
    steps = {step["stage"]: step for step in flow["steps"]}
    assert flow["client_order_id"] == client_order_id(decision.id)
    assert steps["risk"]["detail"]["verdict"] == "approved"
    assert steps["orders"]["detail"]["order"]["status"] == "filled"
    assert [t["status"] for t in steps["orders"]["detail"]["transitions"]] == ["new", "submitted", "filled"]
    assert [f["price"] for f in steps["fills"]["detail"]] == ["101.6"]

    async with api.client() as client:
        missing = await client.get("/decisions/no-such-id", headers=bearer(await api.token("vera")))
    assert missing.status_code == 404


async def test_alerts_are_folded_across_channels(api: ApiUnderTest) -> None:
    ts = int(api.clock() * 1000)
    notes = [
        AlertNotification(channel=channel, name="scanner.volume_spike", severity="warning",
                          message="BTC/USDT volume 4.2 sigma", symbol="BTC/USDT", alert_event_id="alert-1",
                          alert_source="scanner")
        for channel in ("console", "telegram")
    ]
    await produce(api.kafka, ALERT_NOTIFICATIONS.name, [
        Envelope.create(note, key=note.channel, ts=ts, source="alert_orchestrator") for note in notes
    ])
    alerts = await _eventually(api, "/alerts", lambda body: any(a["id"] == "alert-1" for a in body))
    [alert] = [a for a in alerts if a["id"] == "alert-1"]
    assert sorted(alert["channels"]) == ["console", "telegram"]
    assert (alert["severity"], alert["source"]) == ("warning", "scanner")


async def test_the_latest_risk_breakdown_of_each_portfolio(api: ApiUnderTest) -> None:
    ts = int(api.clock() * 1000)
    await produce(api.kafka, RISK_BREAKDOWN.name, [
        risk_breakdown("paper", ts, "10000", leverage=0.1),
        risk_breakdown("ccxt:binance", ts, "1000"),
        risk_breakdown("paper", ts + 1, "10500", leverage=0.2),  # the newer one of the paper account wins
    ])
    body = await _eventually(api, "/risk", lambda b: any(r["portfolio"] == "paper" and r["as_of"] == ts + 1
                                                         for r in b) and len(b) >= 2)
    mine = [r for r in body if r["portfolio"] in ("paper", "ccxt:binance")]
    assert [(r["portfolio"], r["equity"], r["leverage"]) for r in mine] == [
        ("ccxt:binance", "1000", 0.5), ("paper", "10500", 0.2)]
    assert mine[0]["holdings"][0]["symbol"] == "BTC/USDT"


async def test_metrics_are_prometheus_text(api: ApiUnderTest) -> None:
    await api.save_context(sample_context(as_of=int(api.clock() * 1000), agent_lag=7))
    await _get(api, "/agents")  # at least one measured request
    async with httpx.AsyncClient(base_url=api.url) as client:
        response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    families = {family.name: family for family in text_string_to_metric_families(response.text)}
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in families.values() for s in family.samples}
    tech = (("agent", "technical"), ("instance", "host:1"))
    assert samples[("cryptiq_agent_events_processed_total", tech)] == 54_424
    assert samples[("cryptiq_agent_lag_messages", tech)] == 7
    assert samples[("cryptiq_agent_dead_lettered_total", tech)] == 2
    assert samples[("cryptiq_agent_up", tech)] == 1
    assert samples[("cryptiq_agent_last_error", (("agent", "risk"), ("instance", "host:1")))] == 1
    assert families["cryptiq_api_request_duration_seconds"].type == "histogram"
    buckets = [s for s in families["cryptiq_api_request_duration_seconds"].samples
               if s.name.endswith("_bucket") and s.labels["route"] == "/agents"]
    assert buckets
    assert max(s.value for s in buckets) >= 1
    assert any(name == "cryptiq_api_requests_total" and ("route", "/agents") in labels
               for name, labels in samples)


async def test_health_and_the_openapi_document(api: ApiUnderTest) -> None:
    await api.save_context(sample_context(as_of=int(api.clock() * 1000)))
    async with httpx.AsyncClient(base_url=api.url) as client:
        deadline = time.monotonic() + 20
        health = await client.get("/health")
        while health.status_code != 200 and time.monotonic() < deadline:  # the feed catches up
            await asyncio.sleep(0.2)
            health = await client.get("/health")
        document = (await client.get("/openapi.json")).json()
        docs = await client.get("/docs")
    assert health.status_code == 200, health.text
    assert health.json() == {"status": "ok", "redis": True, "postgres": True, "kafka_feed": "following",
                             "context_stored": True}
    paths = set(document["paths"])
    assert {"/health", "/state", "/agents", "/regimes", "/strategies", "/positions", "/risk", "/decisions",
            "/decisions/{decision_id}", "/metrics", "/auth/token", "/commands/kill-switch",
            "/commands/strategy", "/commands/agents/{agent}/pause"} <= paths
    assert "OAuth2PasswordBearer" in document["components"]["securitySchemes"]
    assert docs.status_code == 200
