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

import infra
from agents.base import AgentDeps
from config.settings import OrchestratorConfig, Settings
from memory.database import create_engine
from memory.decision_log import DecisionLog, DecisionRecord
from memory.model_registry import ModelRegistry
from orchestrator.regime import ForestDetector, MarketConditionDetector
from orchestrator.selector import (
    Handoff,
    SelectorConfigError,
    StrategySelector,
    default_strategies_path,
    load_strategies,
    reload_if_changed,
)
from orchestrator.switching import StrategyOrchestrator
from strategies.base import Position, StrategyFailure
from topics.envelope import Envelope
from topics.events import Event
from topics.market import CandleClosed, instrument_key
from topics.orders import OrderFilled
from topics.registry import ALERTS, EXECUTION_REPORTS, MARKET_CANDLES, REGIME, STRATEGY_INTENTS, TopicSpec
from topics.system import AlertRaised
from topics.trading import OrderIntent

STREAM_PREFIX = "stream:"
SWITCHING_KEY = "switching"
POSITIONS_KEY = "positions"
RECENT_FILLS = 10_000  # trade ids remembered to ignore fills read again after a restart


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
        self.touched: set[str] = set()  # streams (and SWITCHING_KEY / POSITIONS_KEY) changed since saved
        self.decisions: list[DecisionRecord] = []  # recorded since the last flush
        self._candles_since_check = 0

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
        else:
            stream = key.removeprefix(STREAM_PREFIX)
            exchange, symbol, timeframe = stream.rsplit(":", 2)
            self.detectors[stream] = MarketConditionDetector.from_state(
                state["detector"], exchange, symbol, timeframe, forest=self.forest
            )
            self.last_open_time[stream] = state["last_open_time"]

    def _configured(self) -> Handoff | None:
        return self._handoff(self.switching.selector.config.handoff)

    # -- events --------------------------------------------------------------------------------

    def handle(self, env: Envelope[Event]) -> list[Envelope[Event]]:
        if isinstance(env.payload, OrderFilled):
            self._fill(env.payload)
            return []
        assert isinstance(env.payload, CandleClosed)
        return self._candle(env, env.payload)  # type: ignore[arg-type]

    def _fill(self, fill: OrderFilled) -> None:
        if fill.trade_id in self.fills:
            return  # read again after a restart: already counted
        self.fills.append(fill.trade_id)
        key = instrument_key(fill.exchange, fill.symbol)
        signed = fill.quantity if fill.side == "buy" else -fill.quantity
        self.positions[key] = self.positions.get(key, Decimal(0)) + signed
        self.touched.add(POSITIONS_KEY)

    def _candle(self, env: Envelope[Event], candle: CandleClosed) -> list[Envelope[Event]]:
        key = env.key
        if candle.open_time <= self.last_open_time.get(key, -1):
            return []  # seen before (a replay after a crash): the state already has it
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
        step = self.switching.on_candle(candle, None, position, detector.regime)
        for intent in step.intents:
            out.append(self._intent(env, intent))
        out.extend(self._failure(env, failure) for failure in step.failures)
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
            self.switching.use_selector(StrategySelector(strategies))
            self.switching.handoff = self._handoff(strategies.handoff) or strategies.handoff
        return []

    def take_decisions(self) -> list[DecisionRecord]:
        """The decisions recorded since the last call (the caller writes them)."""
        taken, self.decisions = self.decisions, []
        return taken


class OrchestratorAgent:
    """Regimes per stream and the regime's strategy's order intents, with decision traces in Postgres."""

    name: ClassVar[str] = "orchestrator"
    consumes: ClassVar[tuple[TopicSpec, ...]] = (MARKET_CANDLES, EXECUTION_REPORTS)
    produces: ClassVar[tuple[TopicSpec, ...]] = (REGIME, STRATEGY_INTENTS, ALERTS)

    def __init__(self, deps: AgentDeps, decisions: DecisionLog | None = None) -> None:
        """`decisions` None: the Postgres of the settings (none without settings: decisions are dropped)."""
        self.deps = deps
        self.config = deps.settings.orchestrator if deps.settings is not None else OrchestratorConfig()
        self.core = OrchestratorCore(self.config)
        self.decisions = decisions
        self._postgres_url: str | None = None

    async def start(self) -> None:
        forest = None
        settings = self.deps.settings
        if settings is not None:
            forest = await latest_forest(settings, self.config.regime_model)
            if self.decisions is None:
                self._postgres_url = infra.endpoints(settings).postgres_url
        name = self.config.regime_model
        if forest is None:
            self.deps.log.info("regime_model_missing", model_name=name, detector="rules")
        else:
            self.deps.log.info("regime_model_loaded", model_name=name, version=forest.version)
        self.core = OrchestratorCore(self.config, forest)
        for key in (SWITCHING_KEY, POSITIONS_KEY, *await self.deps.store.keys(STREAM_PREFIX)):
            saved = await self.deps.store.load(key)
            if saved is not None:
                self.core.restore(key, saved)

    async def checkpoint(self) -> None:
        """Decisions first, then state: a failure here leaves the input to be read (and recorded) again."""
        decisions = self.core.take_decisions()
        try:
            await self._record(decisions)
        except BaseException:
            self.core.decisions[:0] = decisions  # retried at the next checkpoint
            raise
        for key, value in self.core.saved().items():
            await self.deps.store.save(key, value)
            self.core.touched.discard(key.removeprefix(STREAM_PREFIX))  # only once saved

    async def _record(self, decisions: list[DecisionRecord]) -> None:
        """Write to the injected log, or through an engine opened for this write (intents are rare, and the
        runtime has no stop hook that would dispose a long-lived one)."""
        if not decisions:
            return
        if self.decisions is not None:
            await self.decisions.record_many(decisions)
        elif self._postgres_url is not None:
            engine = create_engine(self._postgres_url)
            try:
                await DecisionLog(engine).record_many(decisions)
            finally:
                await engine.dispose()

    async def handle(self, env: Envelope[Event]) -> Sequence[Envelope[Event]]:
        return self.core.handle(env)
