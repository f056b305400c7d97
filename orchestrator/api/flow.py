"""A decision's multi-agent flow: candle -> signals and regime -> strategy intent -> risk -> orders -> fills.

The orchestrator records each intent as a decision (`agent_decisions`, with the strategy's trace:
the candle, its signals, the regime, the active strategy and why). What followed is found by the
decision id: the risk agent's answer (from `risk.decisions`, kept by the API's feed), the order
(`orders` / `order_transitions`, client order id derived from the decision id) and its fills
(`order_fills`). Each step says whether it exists yet; nothing is invented.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from execution.order import client_order_id
from memory.database import translate_errors
from memory.decision_log import DecisionLog, DecisionRecord
from memory.models import AgentDecision
from memory.orders import OrderStore

StepStatus = Literal["done", "pending", "missing"]


class FlowStep(BaseModel):
    """One stage of the flow and what is known of it."""

    stage: Literal["candle", "signals", "intent", "risk", "orders", "fills"]
    agent: str = Field(description="the agent that owns the stage")
    status: StepStatus = Field(description="done: recorded; pending: not there yet; missing: not recorded")
    summary: str
    detail: Any = None


class DecisionFlow(BaseModel):
    """A decision and every stage of what led to it and followed from it."""

    decision: DecisionRecord
    client_order_id: str
    steps: list[FlowStep]


async def recent_decisions(
    engine: AsyncEngine, *, limit: int, agent: str | None = None, symbol: str | None = None,
) -> list[DecisionRecord]:
    """The newest decisions first (DecisionLog.query reads oldest first, for replays)."""
    columns = [getattr(AgentDecision, name) for name in DecisionRecord.model_fields]
    statement = select(*columns)
    if agent is not None:
        statement = statement.where(AgentDecision.agent == agent)
    if symbol is not None:
        statement = statement.where(AgentDecision.symbol == symbol)
    statement = statement.order_by(AgentDecision.ts.desc(), AgentDecision.id.desc()).limit(limit)
    with translate_errors():
        async with engine.connect() as conn:
            rows = (await conn.execute(statement)).all()
    return [DecisionRecord.model_validate(row._mapping) for row in rows]


async def decision_flow(
    engine: AsyncEngine, decision_id: str, risk_decisions: dict[str, dict[str, Any]]
) -> DecisionFlow | None:
    """The flow of `decision_id`, or None if no such decision was recorded."""
    decision = await DecisionLog(engine).get(decision_id)
    if decision is None:
        return None
    trace = decision.trace or {}
    cid = client_order_id(decision_id)
    orders = OrderStore(engine)
    order = await orders.get(cid)
    transitions = await orders.transitions(cid) if order is not None else []
    fills = await orders.fills(cid)
    risk = risk_decisions.get(decision_id)
    steps = [
        _candle_step(trace), _signals_step(trace), _intent_step(decision, trace), _risk_step(risk, order),
        FlowStep(
            stage="orders", agent="execution", status="done" if order is not None else "pending",
            summary=(f"{order.side} {order.quantity} {order.symbol} {order.order_type}: {order.status}"
                     if order is not None else f"no order {cid} yet"),
            detail={"order": order.model_dump(mode="json") if order is not None else None,
                    "transitions": [t.model_dump(mode="json") for t in transitions]},
        ),
        FlowStep(
            stage="fills", agent="execution", status="done" if fills else "pending",
            summary=(f"{len(fills)} fill(s), {sum(f.quantity for f in fills)} filled" if fills
                     else "no fills yet"),
            detail=[fill.model_dump(mode="json") for fill in fills],
        ),
    ]
    return DecisionFlow(decision=decision, client_order_id=cid, steps=steps)


def _candle_step(trace: dict[str, Any]) -> FlowStep:
    candle = trace.get("candle")
    if not isinstance(candle, dict):
        return FlowStep(stage="candle", agent="market_data", status="missing", summary="not in the trace")
    return FlowStep(stage="candle", agent="market_data", status="done",
                    summary=f"{candle.get('timeframe')} candle closed at {candle.get('close')}",
                    detail=candle)


def _signals_step(trace: dict[str, Any]) -> FlowStep:
    detail = {key: trace[key] for key in ("regime", "signals", "technical") if key in trace}
    if not detail:
        return FlowStep(stage="signals", agent="technical", status="missing", summary="not in the trace")
    technical = trace.get("technical")
    said = f", technical says {technical.get('decision')}" if isinstance(technical, dict) else ""
    return FlowStep(stage="signals", agent="technical", status="done",
                    summary=f"regime {trace.get('regime', '?')}{said}", detail=detail)


def _intent_step(decision: DecisionRecord, trace: dict[str, Any]) -> FlowStep:
    keys = ("strategy", "action", "reason", "params", "active", "pending", "handoff_mode")
    detail = {key: trace[key] for key in keys if key in trace}
    detail["output_ids"] = decision.output_ids
    return FlowStep(stage="intent", agent=decision.agent, status="done",
                    summary=f"{trace.get('strategy', '?')} -> {trace.get('action', decision.kind or '?')}: "
                            f"{trace.get('reason', '')}".rstrip(": "),
                    detail=detail)


def _risk_step(risk: dict[str, Any] | None, order: object | None) -> FlowStep:
    if risk is not None:
        return FlowStep(stage="risk", agent="risk", status="done",
                        summary=f"{risk['verdict']} size {risk['size']}: {'; '.join(risk['reasons'])}",
                        detail=risk)
    if order is not None:  # an order exists only for an approved or resized decision
        return FlowStep(stage="risk", agent="risk", status="done",
                        summary="approved (the order exists; the decision itself is older than the API's "
                                "view of risk.decisions)")
    return FlowStep(stage="risk", agent="risk", status="pending", summary="no risk decision seen yet")
