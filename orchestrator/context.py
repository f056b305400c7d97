"""The ExecutionContext: what the orchestrator is running, per stream, per agent and per task.

- per stream (`exchange:symbol:timeframe`): the confirmed regime and since when, the active
  strategy and its parameters (and whether an operator pinned it), the position, and the intents
  still open (sent to risk and not yet rejected, filled, cancelled or expired). An intent that
  neither risk nor execution has moved on after `intent_timeout_candles` candles of its stream
  (no decision, or an approval with no order) is closed as `expired` and its task fails with
  that reason: an operator sees that risk or execution is not answering, and a context whose
  answers never come stays small;
- per agent: its last heartbeat (status, processed, dead-lettered, lag, last error);
- per task: each intent is a small workflow of two tasks, `<decision_id>/risk` then
  `<decision_id>/execution` (which depends on the first), each with its status, attempts and last
  error.

`ContextTracker` keeps it up to date from the events the orchestrator reads and writes; time is
the events' time. The orchestrator agent mirrors it to Redis (what the ops API and dashboards read:
scope `orchestrator`, key `context`, in the deployment's namespace), publishes each changed stream
on the compacted `orchestrator.state` topic and snapshots the whole context to Postgres.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from topics.market import timeframe_ms
from topics.orchestration import OpenIntent, StreamStateChanged
from topics.orders import OrderUpdated
from topics.system import AgentHeartbeat
from topics.trading import OrderIntent, RiskDecision

REDIS_SCOPE = "orchestrator"  # RedisStateStore(namespace, REDIS_SCOPE) ...
REDIS_KEY = "context"  # ... .load(REDIS_KEY) is the whole ExecutionContext as JSON
FINISHED_TASKS_KEPT = 500  # finished tasks kept for the dashboard (up to twice as many between prunes)

TaskStatus = Literal["pending", "running", "done", "failed", "skipped"]
StreamState = StreamStateChanged  # a stream's entry in the context is exactly what the topic carries
_FINISHED = ("done", "failed", "skipped")
_UNANSWERED = ("sent", "approved", "resized")  # no decision yet, or approved with no order yet
_TERMINAL_ORDER = {"filled": "done", "cancelled": "failed", "rejected": "failed", "expired": "failed"}


class AgentHealth(BaseModel):
    """An agent's last heartbeat as the orchestrator saw it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    agent: str
    instance: str
    status: str
    processed: int = 0
    dead_lettered: int = 0
    lag: int = 0
    last_error: str | None = None
    last_heartbeat: int = Field(description="the heartbeat's time, UTC ms (wall clock of that process)")


class TaskState(BaseModel):
    """One step of a workflow the orchestrator started."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    task: str
    status: TaskStatus = "pending"
    attempts: int = 0
    last_error: str | None = None
    depends_on: tuple[str, ...] = ()
    updated: int = Field(0, description="event time of the last change, UTC ms")


class ExecutionContext(BaseModel):
    """Everything above, as of the event time `as_of`."""

    model_config = ConfigDict(extra="forbid")

    as_of: int = 0
    streams: dict[str, StreamState] = Field(default_factory=dict)
    agents: dict[str, AgentHealth] = Field(default_factory=dict)
    tasks: dict[str, TaskState] = Field(default_factory=dict)

    def to_json(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> ExecutionContext:
        return cls.model_validate_json(data)


class ContextTracker:
    """Applies events to an ExecutionContext and remembers which streams changed (to publish them)."""

    def __init__(self, context: ExecutionContext | None = None, *, intent_timeout_candles: int) -> None:
        """`intent_timeout_candles`: candles of its stream an intent may wait for risk's decision or
        its order (`orchestrator.intent_timeout_candles`)."""
        self.context = context if context is not None else ExecutionContext()
        self.intent_timeout_candles = intent_timeout_candles
        self._prune_above = 2 * FINISHED_TASKS_KEPT  # tasks held before the next prune (amortised)
        self.changed_streams: set[str] = set()  # streams to publish on orchestrator.state
        self.dirty = False  # anything changed since the last `clean()`
        self.outcomes: list[tuple[str, dict[str, JsonValue]]] = []  # (decision id, outcome) to link
        self._stream_of_decision = {
            intent.decision_id: stream
            for stream, state in self.context.streams.items() for intent in state.open_intents
        }

    # -- streams ---------------------------------------------------------------------------------

    def on_candle(
        self, stream: str, *, ts: int, open_time: int, regime: str | None, regime_changed: bool,
        strategy: str | None, params: dict[str, JsonValue], pinned: bool, position: Decimal,
    ) -> None:
        """The stream after a candle: its regime, active strategy and the instrument's position."""
        exchange, symbol, timeframe = stream.rsplit(":", 2)
        old = self.context.streams.get(stream)
        base = old if old is not None else StreamState(stream=stream, exchange=exchange, symbol=symbol,
                                                       timeframe=timeframe)
        since = open_time if regime_changed or (old is None and regime is not None) else base.regime_since
        update = {"regime": regime, "regime_since": since, "strategy": strategy, "params": params,
                  "pinned": pinned, "position": position}
        if any(getattr(base, name) != value for name, value in update.items()) or old is None:
            self.changed_streams.add(stream)
        self.context.streams[stream] = base.model_copy(update={**update, "last_candle": open_time})
        self._expire(stream, timeframe, ts)
        self._touch(ts)

    def _expire(self, stream: str, timeframe: str, ts: int) -> None:
        """Close the stream's intents nobody answered within `intent_timeout_candles` candles."""
        state = self.context.streams[stream]
        if not state.open_intents:
            return
        try:
            horizon = self.intent_timeout_candles * timeframe_ms(timeframe)
        except ValueError:
            return  # a timeframe we cannot measure: nothing expires
        for intent in state.open_intents:
            if intent.status not in _UNANSWERED or ts - intent.ts < horizon:
                continue
            decided = intent.status != "sent"
            risk, execution = f"{intent.decision_id}/risk", f"{intent.decision_id}/execution"
            reason = (f"expired: no {'order' if decided else 'risk decision'} within "
                      f"{self.intent_timeout_candles} candles")
            self._task(execution if decided else risk, "failed", ts, last_error=reason)
            if not decided:
                self._task(execution, "skipped", ts)
            if self._close_intent(intent.decision_id):
                outcome: dict[str, JsonValue] = {"status": "expired", "at": ts, "reasons": [reason]}
                self.outcomes.append((intent.decision_id, outcome))

    def on_intent(self, stream: str, intent: OrderIntent, ts: int) -> None:
        """An intent sent to risk: open it, and start its risk task (execution waits on it)."""
        state = self.context.streams[stream]
        opened = OpenIntent(decision_id=intent.decision_id, side=intent.side, strategy=intent.strategy, ts=ts)
        kept = tuple(item for item in state.open_intents if item.decision_id != intent.decision_id)
        self.context.streams[stream] = state.model_copy(update={"open_intents": (*kept, opened)})
        self._stream_of_decision[intent.decision_id] = stream
        self.changed_streams.add(stream)
        risk, execution = f"{intent.decision_id}/risk", f"{intent.decision_id}/execution"
        self._task(risk, "running", ts, attempts=1)
        self._task(execution, "pending", ts, depends_on=(risk,))
        self._touch(ts)

    def on_risk_decision(self, decision: RiskDecision, ts: int) -> None:
        """Risk answered: a rejection closes the intent; an approval waits for its order."""
        risk, execution = f"{decision.decision_id}/risk", f"{decision.decision_id}/execution"
        if decision.verdict == "rejected":
            self._task(risk, "done", ts, last_error="; ".join(decision.reasons))
            self._task(execution, "skipped", ts)
            if self._close_intent(decision.decision_id):
                self.outcomes.append((decision.decision_id, {
                    "status": "rejected", "at": ts, "reasons": list(decision.reasons),
                }))
        else:
            self._task(risk, "done", ts)
            self._update_intent(decision.decision_id, status=decision.verdict, size=decision.size)
        self._touch(ts)

    def on_order(self, order: OrderUpdated, ts: int) -> None:
        """The order carrying a decision changed: working, partly filled, or finished."""
        execution = f"{order.decision_id}/execution"
        finished = _TERMINAL_ORDER.get(order.status)
        if finished is not None:
            error = None if finished == "done" else f"order {order.status}"
            self._task(execution, finished, ts, last_error=error)  # type: ignore[arg-type]
            if self._close_intent(order.decision_id):
                self.outcomes.append((order.decision_id, _order_outcome(order, ts)))
        elif order.status in ("submitted", "partially_filled"):
            attempts = 1 if order.status == "submitted" else None
            self._task(execution, "running", ts, attempts=attempts)
            self._update_intent(order.decision_id, status=order.status)
        self._touch(ts)

    def pin(self, stream: str, strategy: str | None) -> None:
        """Mark a stream pinned (or released) before its next candle shows the strategy."""
        state = self.context.streams.get(stream)
        if state is not None:
            self.context.streams[stream] = state.model_copy(update={"pinned": strategy is not None})
            self.changed_streams.add(stream)
            self.dirty = True

    # -- agents ----------------------------------------------------------------------------------

    def on_heartbeat(self, beat: AgentHeartbeat, ts: int) -> None:
        self.context.agents[beat.agent] = AgentHealth(
            agent=beat.agent, instance=beat.instance, status=beat.status, processed=beat.processed,
            dead_lettered=beat.dead_lettered, lag=beat.lag, last_error=beat.last_error, last_heartbeat=ts,
        )
        self.dirty = True

    # -- bookkeeping -----------------------------------------------------------------------------

    def take_changed(self) -> list[StreamState]:
        """The streams changed since the last call, in key order (to publish)."""
        taken = [self.context.streams[stream] for stream in sorted(self.changed_streams)]
        self.changed_streams.clear()
        return taken

    def take_outcomes(self) -> list[tuple[str, dict[str, JsonValue]]]:
        """The outcomes known since the last call (the caller links them to the decisions)."""
        taken, self.outcomes = self.outcomes, []
        return taken

    def clean(self) -> None:
        self.dirty = False

    def _touch(self, ts: int) -> None:
        self.context.as_of = max(self.context.as_of, ts)
        self.dirty = True

    def _task(
        self, name: str, status: TaskStatus, ts: int, *, attempts: int | None = None,
        last_error: str | None = None, depends_on: tuple[str, ...] | None = None,
    ) -> None:
        old = self.context.tasks.get(name) or TaskState(task=name)
        self.context.tasks[name] = old.model_copy(update={
            "status": status, "updated": ts, "attempts": old.attempts + (attempts or 0),
            "last_error": last_error if last_error is not None else old.last_error,
            "depends_on": depends_on if depends_on is not None else old.depends_on,
        })
        self._prune()

    def _prune(self) -> None:
        """Keep open tasks and only the newest finished ones (by event time, then name). Pruning
        looks at every task, so it runs once `FINISHED_TASKS_KEPT` more have come: O(1) a task."""
        if len(self.context.tasks) <= self._prune_above:
            return
        finished = [task for task in self.context.tasks.values() if task.status in _FINISHED]
        excess = len(finished) - FINISHED_TASKS_KEPT
        if excess > 0:
            for task in sorted(finished, key=lambda item: (item.updated, item.task))[:excess]:
                del self.context.tasks[task.task]
        self._prune_above = len(self.context.tasks) + FINISHED_TASKS_KEPT

    def _update_intent(self, decision_id: str, **update: object) -> None:
        stream = self._stream_of_decision.get(decision_id)
        if stream is None:
            return  # not ours (another orchestrator's, or closed already)
        state = self.context.streams[stream]
        intents = tuple(item.model_copy(update=update) if item.decision_id == decision_id else item
                        for item in state.open_intents)
        self.context.streams[stream] = state.model_copy(update={"open_intents": intents})
        self.changed_streams.add(stream)

    def _close_intent(self, decision_id: str) -> bool:
        """Remove an open intent; False if it was not open here."""
        stream = self._stream_of_decision.pop(decision_id, None)
        if stream is None:
            return False
        state = self.context.streams[stream]
        intents = tuple(item for item in state.open_intents if item.decision_id != decision_id)
        self.context.streams[stream] = state.model_copy(update={"open_intents": intents})
        self.changed_streams.add(stream)
        return True


def _order_outcome(order: OrderUpdated, ts: int) -> dict[str, JsonValue]:
    """What became of an intent whose order finished: how much filled, at what average price."""
    average = order.filled_notional / order.filled_quantity if order.filled_quantity else None
    return {
        "status": order.status, "at": ts, "client_order_id": order.client_order_id,
        "filled_quantity": str(order.filled_quantity), "filled_notional": str(order.filled_notional),
        "average_price": str(average) if average is not None else None, "reasons": list(order.reasons),
    }
