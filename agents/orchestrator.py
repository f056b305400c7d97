"""The orchestrator agent: candles in, market regimes and strategies' order intents out.

Per stream (`exchange:symbol:timeframe`) a `MarketConditionDetector` classifies the regime (the
registered random forest `orchestrator.regime_model`, or the rule detector if none is
registered); a confirmed change is published on `regime`. The `StrategyOrchestrator` then runs
the regime's strategy from strategies.yaml with the instrument's position and publishes its
intents on `strategy.intents`, each traced with the regime, strategy and parameters. A strategy
that raises is disabled alone and reported as an `orchestrator.strategy_failed` warning.

Positions are the signed sum of the fills on `execution.reports` (per `exchange:symbol`). The
strategies.yaml file is re-read when its mtime changes, checked every `orchestrator.reload_every`
candles; an invalid edit keeps the running config and raises an alert. Every intent is also a
decision in Postgres (`agent_decisions`), written in `checkpoint()` — before the offsets are
committed, idempotent on the intent's decision id.

Candles a stream has already seen are ignored, so a restart from saved state is exact.

The agent also keeps the ExecutionContext (orchestrator/context.py): per stream the regime,
strategy, pin, position and open intents; per agent its last heartbeat (`agents.heartbeat`); per
intent its risk and execution tasks, followed on `risk.decisions` and `orders`. Each change of a
stream is published on the compacted `orchestrator.state`; the whole context is mirrored to Redis
(`orchestrator:context`, what the ops API reads) at every checkpoint and snapshotted to Postgres
(`execution_context_snapshots`) every `orchestrator.snapshot_every_ms` of event time. Operators pin
or release a stream's strategy with `StrategyOverridden` on `control.commands`.

The optimiser's `StrategyRanked` events (compacted `strategies.rankings`) are kept, the latest per key
(newest `at`), with the rest of the state. At the next candle the selector is rebuilt from them
(orchestrator.selector `selector_from`): a regime's strategies are ordered by the stream's rankings,
else the mean over every stream, else strategies.yaml, each ranked one with its optimised parameters.
A pin still wins. A ranking of an unknown strategy or with invalid parameters is a DomainError
(dead-lettered with the reason).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

import infra
from agents.base import AgentDeps
from config.errors import DomainError
from config.settings import OrchestratorConfig, Settings
from memory.context_snapshots import ContextSnapshots
from memory.database import create_engine
from memory.decision_log import DecisionLog, DecisionRecord
from memory.model_registry import ModelRegistry
from orchestrator.context import REDIS_KEY, ContextTracker, ExecutionContext
from orchestrator.regime import ForestDetector, MarketConditionDetector
from orchestrator.selector import (
    Handoff,
    SelectorConfigError,
    StrategiesConfig,
    StrategySelector,
    default_strategies_path,
    load_strategies,
    parse_choice,
    ranked_choice,
    reload_if_changed,
    selector_from,
)
from orchestrator.switching import StrategyOrchestrator
from strategies.base import Position, StrategyFailure
from topics.backtest import StrategyRanked
from topics.control import AgentPauseChanged, StrategyOverridden
from topics.envelope import Envelope
from topics.events import Event
from topics.market import CandleClosed, instrument_key
from topics.orders import OrderFilled, OrderUpdated
from topics.recording import seek_to_log_end
from topics.registry import (
    AGENTS_HEARTBEAT,
    ALERTS,
    CONTROL_COMMANDS,
    EXECUTION_REPORTS,
    MARKET_CANDLES,
    ORCHESTRATOR_STATE,
    ORDERS,
    REGIME,
    RISK_DECISIONS,
    SIGNALS_TECHNICAL,
    STRATEGIES_RANKINGS,
    STRATEGY_INTENTS,
    TopicSpec,
)
from topics.serialization import decode, encode
from topics.system import AgentHeartbeat, AlertRaised
from topics.technical import TechnicalSignal
from topics.trading import OrderIntent, RiskDecision

STREAM_PREFIX = "stream:"
WAITING_PREFIX = "waiting:"  # a stream's candles and signals that are still waiting for their pair
SWITCHING_KEY = "switching"
RANKINGS_KEY = "rankings"  # the latest StrategyRanked per key (strategies.rankings)
POSITIONS_KEY = "positions"
RECENT_FILLS = 10_000  # trade ids remembered to ignore fills read again after a restart
RECENT_INTENTS = 10_000  # intents per partition read back at start: those published after the last checkpoint


async def latest_forest(settings: Settings, name: str) -> ForestDetector | None:
    """The newest registered regime forest called `name`, checked against its sha256; None if none."""
    engine = create_engine(infra.endpoints(settings).postgres_url)
    try:
        record = await ModelRegistry(engine).latest(name)
    finally:
        await engine.dispose()
    if record is None:
        return None
    data = await asyncio.to_thread(Path(record.path).read_bytes)
    return ForestDetector.load(data, record.sha256, record.version)


async def published_decisions(settings: Settings, source: str, tail: int = RECENT_INTENTS) -> set[str]:
    """Decision ids of the intents `source` published among the last `tail` records of each partition.

    A process killed after its intents reached the broker but before its checkpoint re-reads those
    candles after a restart and makes the same intents again; the ones found here are already on
    the log, so they are not published twice (they are still recorded and tracked).
    """
    endpoints = infra.endpoints(settings)
    consumer = AIOKafkaConsumer(**infra.kafka_client_kwargs(settings.kafka, endpoints.kafka_bootstrap),
                                enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    found: set[str] = set()
    try:
        topic = STRATEGY_INTENTS.name
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        if not partitions:
            return found
        consumer.assign(partitions)
        ends = await seek_to_log_end(consumer, partitions)
        for partition, end in ends.items():
            consumer.seek(partition, max(0, end - tail))
        pending = {partition for partition, end in ends.items() if end > 0}
        deadline = asyncio.get_running_loop().time() + 30
        while pending and asyncio.get_running_loop().time() < deadline:
            batches = await consumer.getmany(*pending, timeout_ms=200)
            for records in batches.values():
                for record in records:
                    found.update(_decision_of(record.value, source))
            pending = {part for part in pending if await consumer.position(part) < ends[part]}
    finally:
        await consumer.stop()
    return found


def _decision_of(value: bytes | None, source: str) -> list[str]:
    """[decision id] of an intent envelope published by `source`; [] for anything else."""
    try:
        data = orjson.loads(value or b"")
        if data.get("source") == source and data.get("type") == "OrderIntent":
            return [str(data["payload"]["decision_id"])]
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
        pass  # not ours to judge: the dead-letter policy is the consumers'
    return []


class OrchestratorCore:
    """Candles and fills in, regime changes, intents, alerts and decision records out; time from events."""

    def __init__(self, config: OrchestratorConfig, forest: ForestDetector | None = None) -> None:
        self.config = config
        self.forest = forest
        self.path = config.strategies_path or default_strategies_path()
        strategies = load_strategies(self.path)  # a bad file stops the agent here, with one clear line
        self.mtime: float | None = self.path.stat().st_mtime
        self.switching = StrategyOrchestrator(StrategySelector(strategies), self._handoff(strategies.handoff))
        self.detectors: dict[str, MarketConditionDetector] = {}
        self.last_open_time: dict[str, int] = {}
        self.positions: dict[str, Decimal] = {}
        self.fills: deque[str] = deque(maxlen=RECENT_FILLS)
        self.rankings: dict[str, StrategyRanked] = {}  # StrategyRanked.key -> the latest one
        self.rankings_changed = False  # the selector is rebuilt at the next candle (once per burst)
        self.touched: set[str] = set()  # streams (and SWITCHING_KEY, POSITIONS_KEY...) changed since saved
        self.decisions: list[DecisionRecord] = []  # recorded since the last flush
        self.tracker = ContextTracker(intent_timeout_candles=config.intent_timeout_candles)
        self.already_published: set[str] = set()  # on the log at start (see published_decisions)
        self._candles_since_check = 0
        # stream -> open time -> {"candle": env, "signal": env}: halves of a pair seen so far (signals mode)
        self.waiting: dict[str, dict[int, dict[str, Envelope[Event]]]] = {}

    def _handoff(self, from_file: Handoff) -> Handoff | None:
        """The settings' hand-off over the file's; None lets the file decide."""
        if self.config.handoff is None and self.config.reduce_fraction is None:
            return None
        return Handoff(self.config.handoff or from_file.mode,
                       self.config.reduce_fraction or from_file.reduce_fraction)

    # -- state ---------------------------------------------------------------------------------

    def saved(self) -> dict[str, bytes]:
        """Store key -> bytes of everything touched since the last call."""
        out: dict[str, bytes] = {}
        for key in sorted(self.touched):
            if key == SWITCHING_KEY:
                out[key] = orjson.dumps(self.switching.to_state())
            elif key == POSITIONS_KEY:
                positions = {name: str(quantity) for name, quantity in self.positions.items()}
                out[key] = orjson.dumps({"positions": positions, "fills": list(self.fills)})
            elif key == RANKINGS_KEY:
                out[key] = orjson.dumps({name: self.rankings[name].model_dump(mode="json")
                                         for name in sorted(self.rankings)})
            elif key.startswith(WAITING_PREFIX):
                halves = self.waiting.get(key.removeprefix(WAITING_PREFIX), {})
                out[key] = orjson.dumps({
                    str(open_time): {kind: encode(env).decode() for kind, env in pair.items()}
                    for open_time, pair in sorted(halves.items())
                })
            else:
                detector, last = self.detectors[key].to_state(), self.last_open_time[key]
                out[STREAM_PREFIX + key] = orjson.dumps({"detector": detector, "last_open_time": last})
        return out

    def restore(self, key: str, data: bytes) -> None:
        """Load one store entry written by `saved`."""
        state: dict[str, Any] = orjson.loads(data)
        if key == SWITCHING_KEY:
            selector = self.switching.selector
            self.switching = StrategyOrchestrator.from_state(state, selector, self._configured())
        elif key == POSITIONS_KEY:
            self.positions = {name: Decimal(value) for name, value in state["positions"].items()}
            self.fills.extend(state["fills"])
        elif key == RANKINGS_KEY:
            self.rankings = {name: StrategyRanked.model_validate(raw) for name, raw in state.items()}
            self.switching.use_selector(self._selector(self.switching.selector.config))
        elif key.startswith(WAITING_PREFIX):
            topics = {"candle": MARKET_CANDLES, "signal": SIGNALS_TECHNICAL}
            self.waiting[key.removeprefix(WAITING_PREFIX)] = {
                int(open_time): {kind: decode(topics[kind], value.encode()) for kind, value in pair.items()}
                for open_time, pair in state.items()
            }
        else:
            stream = key.removeprefix(STREAM_PREFIX)
            exchange, symbol, timeframe = stream.rsplit(":", 2)
            self.detectors[stream] = MarketConditionDetector.from_state(
                state["detector"], exchange, symbol, timeframe, forest=self.forest
            )
            self.last_open_time[stream] = state["last_open_time"]

    def _configured(self) -> Handoff | None:
        return self._handoff(self.switching.selector.config.handoff)

    def _selector(self, strategies: StrategiesConfig) -> StrategySelector:
        """`strategies` ordered by the rankings kept so far (in key order: same rankings, same selector)."""
        return selector_from(strategies, (self.rankings[name] for name in sorted(self.rankings)))

    # -- events --------------------------------------------------------------------------------

    def handle(self, env: Envelope[Event]) -> list[Envelope[Event]]:
        payload = env.payload
        out: list[Envelope[Event]] = []
        if isinstance(payload, CandleClosed):
            paired = self.config.signals
            out = self._pair(env, payload.open_time, "candle") if paired else self._candle(env, None)
        elif isinstance(payload, TechnicalSignal):
            out = self._pair(env, payload.open_time, "signal") if self.config.signals else []
        elif isinstance(payload, OrderFilled):
            self._fill(payload)
        elif isinstance(payload, RiskDecision):
            self.tracker.on_risk_decision(payload, env.ts)
        elif isinstance(payload, OrderUpdated):
            self.tracker.on_order(payload, env.ts)
        elif isinstance(payload, AgentHeartbeat):
            self.tracker.on_heartbeat(payload, env.ts)
        elif isinstance(payload, StrategyOverridden):
            self._pin(payload)
        elif isinstance(payload, StrategyRanked):
            self._ranked(payload)
        elif isinstance(payload, AgentPauseChanged):
            pass  # addressed to the runtime of the named agent, not to the orchestrator's state
        return out + self._stream_states(env)

    def _stream_states(self, env: Envelope[Event]) -> list[Envelope[Event]]:
        """The streams this input changed, for the compacted `orchestrator.state` topic."""
        return [Envelope.create(state, key=state.stream, ts=env.ts, source=OrchestratorAgent.name,
                                caused_by=env, discriminator=env.event_id)
                for state in self.tracker.take_changed()]

    def _pin(self, command: StrategyOverridden) -> None:
        """An operator pins a stream to a strategy (or releases it); it takes effect at the next candle."""
        if command.strategy is None:
            choice = None
        else:
            try:
                choice = parse_choice({"strategy": command.strategy, "params": command.params},
                                      f"control command from {command.actor}")
            except SelectorConfigError as exc:
                raise DomainError(str(exc)) from None  # dead-lettered with this reason
        self.switching.pin(command.stream, choice)
        self.tracker.pin(command.stream, command.strategy)
        self.touched.add(SWITCHING_KEY)

    def _ranked(self, event: StrategyRanked) -> None:
        """The optimiser's latest standing of a strategy on a stream: the selector is rebuilt with it at the
        next candle (so reading the whole compacted topic rebuilds it once). An older run's standing than
        the one kept is ignored."""
        try:
            ranked_choice(event)
        except SelectorConfigError as exc:
            raise DomainError(str(exc)) from None  # dead-lettered with this reason
        known = self.rankings.get(event.key)
        if known is not None and event.at < known.at:
            return
        self.rankings[event.key] = event
        self.rankings_changed = True
        self.touched.add(RANKINGS_KEY)

    def _fill(self, fill: OrderFilled) -> None:
        if fill.trade_id in self.fills:
            return  # read again after a restart: already counted
        self.fills.append(fill.trade_id)
        key = instrument_key(fill.exchange, fill.symbol)
        signed = fill.quantity if fill.side == "buy" else -fill.quantity
        self.positions[key] = self.positions.get(key, Decimal(0)) + signed
        self.touched.add(POSITIONS_KEY)

    def _pair(self, env: Envelope[Event], open_time: int, kind: str) -> list[Envelope[Event]]:
        """Signals mode: decide on a candle once its `signals.technical` event is here too (either may
        come first: they are read from two topics). A pair that completes drops the older halves of
        its stream that never found theirs (a candle the technical agent dead-lettered, say)."""
        key = env.key
        if open_time <= self.last_open_time.get(key, -1):
            return []  # seen before (a replay after a crash): the state already has it
        halves = self.waiting.setdefault(key, {})
        pair = halves.setdefault(open_time, {})
        pair[kind] = env
        self.touched.add(WAITING_PREFIX + key)
        if len(pair) < 2:
            return []
        for stale in [t for t in halves if t <= open_time]:
            del halves[stale]
        return self._candle(pair["candle"], pair["signal"])

    def _candle(self, env: Envelope[Event], signal_env: Envelope[Event] | None) -> list[Envelope[Event]]:
        key = env.key
        candle = env.payload
        assert isinstance(candle, CandleClosed)
        if candle.open_time <= self.last_open_time.get(key, -1):
            return []  # seen before (a replay after a crash): the state already has it
        signals = signal_env.payload if signal_env is not None else None
        assert signals is None or isinstance(signals, TechnicalSignal)
        if self.rankings_changed:
            self.switching.use_selector(self._selector(self.switching.selector.config))
            self.rankings_changed = False
        out = self._maybe_reload(env)
        detector = self.detectors.get(key)
        if detector is None:
            detector = MarketConditionDetector(candle.exchange, candle.symbol, candle.timeframe,
                                               forest=self.forest)
            self.detectors[key] = detector
        changed = detector.update(candle)
        self.last_open_time[key] = candle.open_time
        self.touched.update((key, SWITCHING_KEY))
        if changed is not None:
            out.append(Envelope.create(changed, key=key, ts=env.ts, source=OrchestratorAgent.name,
                                       caused_by=env))
        position = Position(self.positions.get(instrument_key(candle.exchange, candle.symbol), Decimal(0)))
        step = self.switching.on_candle(candle, signals, position, detector.regime)
        for intent in step.intents:
            published = self._intent(env, intent)
            if intent.decision_id in self.already_published:
                self.already_published.discard(intent.decision_id)  # on the log before a crash: not again
            else:
                out.append(published)
        out.extend(self._failure(env, failure) for failure in step.failures)
        active = self.switching.active(key)
        self.tracker.on_candle(
            key, ts=env.ts, open_time=candle.open_time, regime=detector.regime,
            regime_changed=changed is not None, strategy=active.strategy if active else None,
            params=active.params.model_dump(mode="json") if active else {},
            pinned=key in self.switching.pins, position=position.quantity,
        )
        for intent in step.intents:
            self.tracker.on_intent(key, intent, env.ts)
        return out

    def _intent(self, env: Envelope[Event], intent: OrderIntent) -> Envelope[Event]:
        published = Envelope.create(intent, key=intent.key, ts=env.ts, source=OrchestratorAgent.name,
                                    caused_by=env, discriminator=intent.decision_id)
        reason = intent.trace.get("reason")
        self.decisions.append(DecisionRecord(
            id=intent.decision_id, agent=OrchestratorAgent.name, symbol=intent.symbol, ts=env.ts,
            kind="intent", input_ids=[env.event_id], output_ids=[published.event_id],
            reasons=[reason] if reason is not None else [], trace=intent.trace,
        ))
        return published  # type: ignore[return-value]

    @staticmethod
    def _failure(env: Envelope[Event], failure: StrategyFailure) -> Envelope[Event]:
        alert = AlertRaised(
            name="orchestrator.strategy_failed", severity="warning", symbol=failure.symbol,
            message=f"strategy {failure.strategy} raised {failure.error} on {failure.exchange}:"
                    f"{failure.symbol} at {failure.open_time} and is disabled: {failure.message}",
            details={"strategy": failure.strategy, "error": failure.error, "open_time": failure.open_time,
                     "stream": env.key},
        )
        return Envelope.create(alert, key=failure.symbol, ts=env.ts, source=OrchestratorAgent.name,
                               caused_by=env, discriminator=failure.strategy)

    def _maybe_reload(self, env: Envelope[Event]) -> list[Envelope[Event]]:
        """Every `reload_every` candles: swap in strategies.yaml if its mtime changed; alert if invalid."""
        self._candles_since_check += 1
        if self._candles_since_check < self.config.reload_every:
            return []
        self._candles_since_check = 0
        try:
            strategies, self.mtime = reload_if_changed(self.path, self.mtime)
        except SelectorConfigError as exc:
            with contextlib.suppress(OSError):
                self.mtime = self.path.stat().st_mtime  # alert once per bad edit, not on every check
            alert = AlertRaised(name="orchestrator.strategies_invalid", severity="warning",
                                message=f"{exc}; still running the previous strategies",
                                details={"path": str(self.path)})
            return [Envelope.create(alert, key="orchestrator.strategies_invalid", ts=env.ts,
                                    source=OrchestratorAgent.name, caused_by=env)]
        if strategies is not None:
            self.switching.use_selector(self._selector(strategies))
            self.switching.handoff = self._handoff(strategies.handoff) or strategies.handoff
        return []

    def take_decisions(self) -> list[DecisionRecord]:
        """The decisions recorded since the last call (the caller writes them)."""
        taken, self.decisions = self.decisions, []
        return taken


class OrchestratorAgent:
    """Regimes per stream and the regime's strategy's order intents, with decision traces in Postgres."""

    name: ClassVar[str] = "orchestrator"
    consumes: ClassVar[tuple[TopicSpec, ...]] = (
        MARKET_CANDLES, SIGNALS_TECHNICAL, EXECUTION_REPORTS, RISK_DECISIONS, ORDERS, AGENTS_HEARTBEAT,
        CONTROL_COMMANDS, STRATEGIES_RANKINGS,
    )
    produces: ClassVar[tuple[TopicSpec, ...]] = (REGIME, STRATEGY_INTENTS, ALERTS, ORCHESTRATOR_STATE)

    def __init__(
        self, deps: AgentDeps, decisions: DecisionLog | None = None,
        snapshots: ContextSnapshots | None = None, config: OrchestratorConfig | None = None,
    ) -> None:
        """`decisions`/`snapshots` None: on the Postgres of the settings (without settings: not kept);
        `config` None: the settings' `orchestrator` section."""
        self.deps = deps
        if config is None:
            config = deps.settings.orchestrator if deps.settings is not None else OrchestratorConfig()
        self.config = config
        self.core = OrchestratorCore(self.config)
        self.decisions = decisions
        self.snapshots = snapshots or (ContextSnapshots(decisions.engine) if decisions is not None else None)
        self._engine: Any = None  # ours to dispose in close()
        self._snapshot_as_of: int | None = None

    async def start(self) -> None:
        forest = None
        settings = self.deps.settings
        if settings is not None:
            forest = await latest_forest(settings, self.config.regime_model)
            if self.decisions is None:
                self._engine = create_engine(infra.endpoints(settings).postgres_url)
                self.decisions = DecisionLog(self._engine)
                self.snapshots = self.snapshots or ContextSnapshots(self._engine)
        name = self.config.regime_model
        if forest is None:
            self.deps.log.info("regime_model_missing", model_name=name, detector="rules")
        else:
            self.deps.log.info("regime_model_loaded", model_name=name, version=forest.version)
        self.core = OrchestratorCore(self.config, forest)
        if settings is not None:
            self.core.already_published = await published_decisions(settings, self.name)
        keys = [*await self.deps.store.keys(STREAM_PREFIX), *await self.deps.store.keys(WAITING_PREFIX)]
        for key in (SWITCHING_KEY, POSITIONS_KEY, RANKINGS_KEY, *keys):
            saved = await self.deps.store.load(key)
            if saved is not None:
                self.core.restore(key, saved)
        context = await self._recover_context()
        if context is not None:
            self.core.tracker = ContextTracker(
                context, intent_timeout_candles=self.core.config.intent_timeout_candles)
            self._snapshot_as_of = context.as_of

    async def _recover_context(self) -> ExecutionContext | None:
        """The context from Redis, else from the newest Postgres snapshot, else None (a first start)."""
        saved = await self.deps.store.load(REDIS_KEY)
        if saved is not None:
            return ExecutionContext.from_json(saved)
        if self.snapshots is None:
            return None
        latest = await self.snapshots.latest(self.name)
        if latest is None:
            return None
        self.deps.log.info("context_recovered_from_postgres", as_of=latest[0])
        return ExecutionContext.model_validate(latest[1])

    async def checkpoint(self) -> None:
        """Decisions first, then state: a failure here leaves the input to be read (and recorded) again."""
        decisions = self.core.take_decisions()
        try:
            await self._record(decisions)
        except BaseException:
            self.core.decisions[:0] = decisions  # retried at the next checkpoint
            raise
        outcomes = self.core.tracker.take_outcomes()
        try:
            await self._link(outcomes)
        except BaseException:
            self.core.tracker.outcomes[:0] = outcomes
            raise
        for key, value in self.core.saved().items():
            await self.deps.store.save(key, value)
            self.core.touched.discard(key.removeprefix(STREAM_PREFIX))  # only once saved
            self.core.touched.discard(key)
        await self._save_context()

    async def _save_context(self) -> None:
        """Mirror the context to Redis when it changed; snapshot it to Postgres when one is due."""
        tracker = self.core.tracker
        if not tracker.dirty:
            return
        data = tracker.context.to_json()
        await self.deps.store.save(REDIS_KEY, data)
        tracker.clean()
        as_of = tracker.context.as_of
        due = self._snapshot_as_of is None or as_of - self._snapshot_as_of >= self.config.snapshot_every_ms
        if self.snapshots is not None and due:
            await self.snapshots.save(self.name, as_of, data)
            self._snapshot_as_of = as_of

    async def _record(self, decisions: list[DecisionRecord]) -> None:
        if decisions and self.decisions is not None:
            await self.decisions.record_many(decisions)

    async def _link(self, outcomes: list[tuple[str, dict[str, Any]]]) -> None:
        """Attach realised outcomes to the intents' decisions (ignored for decisions that are not ours)."""
        if self.decisions is not None and outcomes:
            await self.decisions.link_outcomes(outcomes)  # one transaction: checkpoints stay short

    async def close(self) -> None:
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None

    async def handle(self, env: Envelope[Event]) -> Sequence[Envelope[Event]]:
        return self.core.handle(env)
