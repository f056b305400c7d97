"""An operator pauses an agent and resumes it with `AgentPauseChanged` on `control.commands`.

Paused, the agent reads nothing but commands (its input waits, nothing is lost) and its heartbeats
say `paused`; a restart while paused stays paused; resumed, it catches up with what waited.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any, ClassVar

import orjson

from agents.echo import EchoAgent
from agents.runtime import AgentHost
from busio import collect, end_offsets, produce
from config import Settings
from factories import candle_series
from infra import Endpoints
from topics.control import AgentPauseChanged
from topics.envelope import Envelope
from topics.registry import AGENTS_HEARTBEAT, CONTROL_COMMANDS, DIAGNOSTICS_ECHO, MARKET_CANDLES


class PausableEcho(EchoAgent):
    """The echo agent under its own name (its own consumer group and commands)."""

    name: ClassVar[str] = f"pausable-{uuid.uuid4().hex[:6]}"


def command(paused: bool, at: int) -> Envelope[AgentPauseChanged]:
    payload = AgentPauseChanged(agent=PausableEcho.name, paused=paused, actor="alice", reason="maintenance",
                                at=at)
    return Envelope.create(payload, key=PausableEcho.name, ts=at, source="api")


def echoed(records: list[Any], wanted: set[str]) -> set[str]:
    ids = {orjson.loads(record.value)["payload"]["of_event_id"] for record in records}
    return ids & wanted


async def test_a_paused_agent_holds_its_input_until_resumed_even_across_a_restart(
    settings: Settings, endpoints: Endpoints, kafka: dict[str, Any],
) -> None:
    fast_beats = settings.model_copy(
        update={"agents": settings.agents.model_copy(update={"heartbeat_interval_s": 0.5})}
    )
    echo_start = await end_offsets(kafka, DIAGNOSTICS_ECHO.name)
    beats_start = await end_offsets(kafka, AGENTS_HEARTBEAT.name)
    first = candle_series(5, start=5_000 * 3_600_000, symbol="PAUSE/ONE")
    held = candle_series(5, start=5_100 * 3_600_000, symbol="PAUSE/TWO")
    host = AgentHost(PausableEcho, fast_beats, endpoints)
    await host.start()
    try:
        await host.wait_ready(30)
        await produce(kafka, MARKET_CANDLES.name, first)
        wanted = {env.event_id for env in first}
        got = await collect(kafka, DIAGNOSTICS_ECHO.name, start=echo_start,
                            until=lambda records: echoed(records, wanted) == wanted)
        assert echoed(got, wanted) == wanted

        await produce(kafka, CONTROL_COMMANDS.name, [command(True, 1)])
        for _ in range(100):
            if host.paused:
                break
            await asyncio.sleep(0.1)
        assert host.paused
        await produce(kafka, MARKET_CANDLES.name, held)
        waiting = {env.event_id for env in held}
        await asyncio.sleep(2)
    finally:
        await host.stop()
    got = await collect(kafka, DIAGNOSTICS_ECHO.name, start=echo_start, timeout=2, until=lambda _: False)
    assert echoed(got, waiting) == set()  # paused: nothing of it was handled
    beats = await collect(kafka, AGENTS_HEARTBEAT.name, start=beats_start, timeout=2, until=lambda _: False)
    statuses = [orjson.loads(r.value)["payload"]["status"] for r in beats
                if orjson.loads(r.value)["payload"]["agent"] == PausableEcho.name]
    assert "paused" in statuses

    restarted = AgentHost(PausableEcho, fast_beats, endpoints)
    await restarted.start()
    try:
        await restarted.wait_ready(30)
        assert restarted.paused  # the pause survived the restart
        assert restarted.state.status == "paused"
        await asyncio.sleep(1.5)
        got = await collect(kafka, DIAGNOSTICS_ECHO.name, start=echo_start, timeout=1, until=lambda _: False)
        assert echoed(got, waiting) == set()

        await produce(kafka, CONTROL_COMMANDS.name, [command(False, 2)])
        got = await collect(kafka, DIAGNOSTICS_ECHO.name, start=echo_start, timeout=30,
                            until=lambda records: echoed(records, waiting) == waiting)
        assert echoed(got, waiting) == waiting  # resumed: what waited is handled, none lost
        assert not restarted.paused
        assert restarted.state.status == "ready"
    finally:
        await restarted.stop()
