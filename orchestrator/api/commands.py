"""Sensitive actions: kill switch, strategy switch, agent pause. Role operator plus a TOTP code.

Each accepted action is written to `audit_log` first and then published as a command event
(`KillSwitchChanged` on `risk.control`, `StrategyOverridden` / `AgentPauseChanged` on
`control.commands`); the agents it addresses apply it. A refused attempt (wrong, reused or missing
TOTP code) is audited too, and wrong codes count against the same limit as failed logins. Each
TOTP code authorises one action. A command's event time is the wall clock of the API: operators
act at the boundary, in real time.
"""

from __future__ import annotations

from typing import Annotated, Any

from aiokafka.errors import KafkaError
from fastapi import APIRouter, HTTPException, Path, status
from pydantic import BaseModel, ConfigDict, Field, JsonValue

from memory.audit import AuditEntry
from orchestrator.api.auth import Principal
from orchestrator.api.deps import ApiState, Operator, State
from strategies import STRATEGIES
from topics.control import AgentPauseChanged, StrategyOverridden
from topics.envelope import Envelope
from topics.events import Event
from topics.registry import REGISTRY
from topics.serialization import encode, headers
from topics.trading import KillSwitchChanged

SOURCE = "api"  # the envelopes' producer

router = APIRouter(prefix="/commands", tags=["commands"])


class _Command(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=500, description="why: kept in the event and the audit log")
    totp: str = Field(min_length=6, max_length=8, description="the caller's current TOTP code")


class KillSwitchRequest(_Command):
    engaged: bool = Field(description="true: reject every intent and cancel open orders; false: release")


class StrategyRequest(_Command):
    stream: str = Field(min_length=1, description="exchange:symbol:timeframe")
    strategy: str | None = Field(None, description="strategy to pin; null releases the pin")
    params: dict[str, JsonValue] = Field(default_factory=dict)


class PauseRequest(_Command):
    paused: bool = Field(description="true: pause the agent; false: resume it")


class CommandAccepted(BaseModel):
    action: str
    topic: str
    key: str
    event_id: str
    audit_id: int


@router.post("/kill-switch", response_model=CommandAccepted)
async def kill_switch(state: State, caller: Operator, body: KillSwitchRequest) -> CommandAccepted:
    """Engage or release the kill switch (`KillSwitchChanged` on `risk.control`, key `kill_switch`)."""
    detail = {"engaged": body.engaged, "reason": body.reason}
    await _second_factor(state, caller, "kill_switch", body.totp, detail)
    event = KillSwitchChanged(engaged=body.engaged, actor=caller.name, reason=body.reason, at=state.now_ms())
    return await _publish(state, caller, "kill_switch", event, "kill_switch", detail=detail)


@router.post("/strategy", response_model=CommandAccepted)
async def switch_strategy(state: State, caller: Operator, body: StrategyRequest) -> CommandAccepted:
    """Pin a stream to a strategy, or release the pin (`StrategyOverridden` on `control.commands`)."""
    if body.strategy is not None and body.strategy not in STRATEGIES:
        raise HTTPException(422, f"unknown strategy {body.strategy!r}; "
                            f"known: {', '.join(sorted(STRATEGIES))}")
    detail = {"stream": body.stream, "strategy": body.strategy, "params": body.params, "reason": body.reason}
    await _second_factor(state, caller, "strategy_switch", body.totp, detail)
    event = StrategyOverridden(stream=body.stream, strategy=body.strategy, params=body.params,
                               actor=caller.name, reason=body.reason, at=state.now_ms())
    return await _publish(state, caller, "strategy_switch", event, body.stream, detail=detail)


@router.post("/agents/{agent}/pause", response_model=CommandAccepted)
async def pause_agent(
    state: State, caller: Operator, body: PauseRequest,
    agent: Annotated[str, Path(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")],
) -> CommandAccepted:
    """Pause or resume an agent (`AgentPauseChanged` on `control.commands`, key = the agent)."""
    detail = {"agent": agent, "paused": body.paused, "reason": body.reason}
    await _second_factor(state, caller, "agent_pause", body.totp, detail)
    event = AgentPauseChanged(agent=agent, paused=body.paused, actor=caller.name, reason=body.reason,
                              at=state.now_ms())
    return await _publish(state, caller, "agent_pause", event, agent, detail=detail)


async def _second_factor(
    state: ApiState, caller: Principal, action: str, code: str, detail: dict[str, Any]
) -> None:
    """Check the caller's TOTP code (and that the user still exists and may act); audit a refusal."""
    assert state.users is not None
    key = f"totp:{caller.name}"
    wait = state.totp_failures.retry_after(key)
    if wait is not None:
        await _refuse(state, caller, action, detail, "too many wrong TOTP codes")
        raise HTTPException(status.HTTP_429_TOO_MANY_REQUESTS, f"too many wrong TOTP codes: try again in "
                            f"{wait:.0f} s", headers={"Retry-After": str(max(1, round(wait)))})
    user = await state.users.get(caller.name)
    if user is None or user.disabled or user.role != caller.role:
        await _refuse(state, caller, action, detail, "user removed, disabled or role changed")
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "your account changed since you logged in: log in "
                            "again", headers={"WWW-Authenticate": "Bearer"})
    verdict = state.totp.check(user.name, user.totp_secret, code)
    if verdict == "reused":
        await _refuse(state, caller, action, detail, "TOTP code used before")
        raise HTTPException(status.HTTP_403_FORBIDDEN, "this TOTP code was used already: wait for the next "
                            "one (each code authorises one action)")
    if verdict == "wrong":
        state.totp_failures.failed(key)
        await _refuse(state, caller, action, detail, "wrong TOTP code")
        raise HTTPException(status.HTTP_403_FORBIDDEN, "wrong or expired TOTP code: enter the current code "
                            "from your authenticator")
    state.totp_failures.succeeded(key)


async def _refuse(state: ApiState, caller: Principal, action: str, detail: dict[str, Any], why: str) -> None:
    assert state.audit is not None
    state.metrics.commands.labels(action, "refused").inc()
    await state.audit.record(AuditEntry(ts=state.now_ms(), actor=caller.name, action=f"{action}.refused",
                                        detail={**detail, "why": why}))


async def _publish(
    state: ApiState, caller: Principal, action: str, event: Event, key: str, *, detail: dict[str, Any]
) -> CommandAccepted:
    """Audit, then publish and wait for the broker's ack (503 if it does not come)."""
    assert state.audit is not None
    topic = REGISTRY.topic_of(type(event)).name
    now = state.now_ms()
    env = Envelope.create(event, key=key, ts=now, source=SOURCE, discriminator=f"{caller.name}:{action}")
    audit_id = await state.audit.record(AuditEntry(
        ts=now, actor=caller.name, action=action,
        detail={**detail, "role": caller.role, "topic": topic, "event_id": env.event_id},
    ))
    if state.producer is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "the Kafka producer is not running")
    try:
        await state.producer.send_and_wait(topic, encode(env), key=env.key.encode(), timestamp_ms=env.ts,
                                           headers=headers(env))
    except KafkaError as exc:
        state.metrics.commands.labels(action, "failed").inc()
        await state.audit.record(AuditEntry(ts=state.now_ms(), actor=caller.name, action=f"{action}.failed",
                                            detail={"event_id": env.event_id, "error": str(exc)}))
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, f"the command was not published ({exc}); "
                            "check Kafka and try again") from None
    state.metrics.commands.labels(action, "accepted").inc()
    return CommandAccepted(action=action, topic=topic, key=key, event_id=env.event_id, audit_id=audit_id)
