"""The technical agent's shell: restores streams from the state store, loads the model, saves on commit.

Each stream's state is its own key (`stream:<exchange:symbol:timeframe>`), and a checkpoint —
which the runtime runs right before committing offsets — saves only the streams that changed.
The model is the latest registered version of `technical.model_name` in Postgres, read once at
start; with none registered, every decision is `hold` with the reason "no model trained".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import orjson

import infra
from agents.base import AgentDeps
from agents.technical.core import TechnicalCore
from agents.technical.model import DecisionModel, load_model
from config.settings import Settings, TechnicalConfig
from memory.database import create_engine
from memory.model_registry import ModelRegistry
from topics.envelope import Envelope
from topics.events import Event
from topics.market import CandleClosed
from topics.registry import ALERTS, MARKET_CANDLES, SIGNALS_TECHNICAL, TopicSpec

STATE_PREFIX = "stream:"


async def latest_model(settings: Settings, name: str) -> DecisionModel | None:
    """The newest registered model called `name`, checked against its sha256; None if there is none.

    `AgentDeps` carries no endpoints, so Postgres is found the way the CLI finds it: from the
    settings and the embedded servers' `infra.json`.
    """
    engine = create_engine(infra.endpoints(settings).postgres_url)
    try:
        record = await ModelRegistry(engine).latest(name)
    finally:
        await engine.dispose()
    if record is None:
        return None
    return load_model(record.path, record.sha256, record.version)


class TechnicalAgent:
    """Indicators, signals with Bayesian confidence, a buy/sell/hold decision and user alerts per candle."""

    name: ClassVar[str] = "technical"
    consumes: ClassVar[tuple[TopicSpec, ...]] = (MARKET_CANDLES,)
    produces: ClassVar[tuple[TopicSpec, ...]] = (SIGNALS_TECHNICAL, ALERTS)

    def __init__(self, deps: AgentDeps) -> None:
        self.deps = deps
        self.config = deps.settings.technical if deps.settings is not None else TechnicalConfig()
        self.core = TechnicalCore(self.config)  # checks the alert rules and indicators now

    async def start(self) -> None:
        model = None
        if self.deps.settings is not None:
            model = await latest_model(self.deps.settings, self.config.model_name)
        if model is None:
            self.deps.log.info("model_missing", model_name=self.config.model_name, decisions="hold")
        else:
            self._warn_if_judged_differently(model)
            self.deps.log.info("model_loaded", model_name=self.config.model_name, version=model.version)
        self.core = TechnicalCore(self.config, model)
        for key in await self.deps.store.keys(STATE_PREFIX):
            saved = await self.deps.store.load(key)
            if saved is not None:
                self.core.restore(key.removeprefix(STATE_PREFIX), orjson.loads(saved))

    def _warn_if_judged_differently(self, model: DecisionModel) -> None:
        trained = (model.params.get("horizon"), model.params.get("fee"))
        if trained != (self.config.horizon, self.config.fee):
            self.deps.log.warning(
                "model_trained_with_other_horizon_or_fee",
                trained_horizon=trained[0], trained_fee=trained[1],
                horizon=self.config.horizon, fee=self.config.fee,
            )

    async def checkpoint(self) -> None:
        for key in sorted(self.core.touched):
            await self.deps.store.save(STATE_PREFIX + key, orjson.dumps(self.core.state_of(key)))
            self.core.touched.discard(key)  # only once saved: a failed save is retried next time

    async def handle(self, env: Envelope[Event]) -> Sequence[Envelope[Event]]:
        assert isinstance(env.payload, CandleClosed)
        return self.core.handle(env)  # type: ignore[arg-type]
