"""The echo agent: answers every candle with an `EchoObserved` — a probe of the whole pipeline.

Operators run it to check that messages flow from producers through the broker and an agent
to consumers; the benchmarks run it to measure the runtime's overhead, since it does no work.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from agents.base import AgentDeps
from topics.envelope import Envelope
from topics.events import Event
from topics.registry import DIAGNOSTICS_ECHO, MARKET_CANDLES, TopicSpec
from topics.system import EchoObserved


class EchoAgent:
    """Republishes each input's identity on `diagnostics.echo`, keyed and timed as the input."""

    name: ClassVar[str] = "echo"
    consumes: ClassVar[tuple[TopicSpec, ...]] = (MARKET_CANDLES,)
    produces: ClassVar[tuple[TopicSpec, ...]] = (DIAGNOSTICS_ECHO,)

    def __init__(self, deps: AgentDeps) -> None:
        self.deps = deps

    async def start(self) -> None:
        """Echo keeps no state."""

    async def handle(self, env: Envelope[Event]) -> Sequence[Envelope[Event]]:
        observed = EchoObserved(of_event_id=env.event_id, of_type=env.type, of_ts=env.ts)
        return [Envelope.create(observed, key=env.key, ts=env.ts, source=self.name, caused_by=env)]
