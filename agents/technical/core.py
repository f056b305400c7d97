"""The technical core: closed candles in, a `TechnicalSignal` (and user alerts) out, per stream.

Pure: no I/O, time only from the candles. Per stream (exchange:symbol:timeframe) it keeps the
streaming indicators, the signal detector, the provisional regime, the hit-rate counts with the
signals still waiting for their outcome, the recent closes and quote volumes, and each alert
rule's crossing side and cooldown. Each candle, in this order:

1. settle the pending signals that are due (their outcome is this candle's close);
2. update the indicators, the regime and the signals;
3. decide buy/sell/hold with the model (hold while the features warm up, or if there is none);
4. attach each signal's and the decision's hit-rate posterior, then queue them for settling;
5. evaluate the alert rules.

A candle whose open_time is not after the stream's last one has been seen (a re-read after a
restart) and changes nothing.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any

from agents.technical.alerts import (
    CANDLE_FIELDS,
    CompiledRule,
    RuleState,
    compile_rules,
    longest_change_window,
)
from agents.technical.confidence import HitRates
from agents.technical.features import RETURN_LAGS, VOLUME_Z, VOLUME_Z_PERIOD, feature_row
from agents.technical.model import DecisionModel
from agents.technical.regime import RegimeTracker
from agents.technical.signals import SignalDetector
from config.errors import ConfigError
from config.settings import TechnicalConfig
from indicators import DEFAULT_INDICATORS, StreamingIndicatorSet, parse_indicators
from indicators.streaming import ZScore
from topics.envelope import Envelope
from topics.events import Event
from topics.market import CandleClosed, timeframe_ms
from topics.system import AlertRaised
from topics.technical import Decision, DetectedSignal, TechnicalSignal

SOURCE = "technical"
QUOTE_VOLUME_WINDOW = 24  # candles of quote volume that rank streams for `topN` alert rules
NO_MODEL = "no model trained"


def indicator_names(config: TechnicalConfig) -> list[str]:
    """The standard indicator set plus the configured extras; ConfigError naming a bad one."""
    try:
        return [spec.name for spec in parse_indicators([*DEFAULT_INDICATORS, *config.indicators])]
    except ValueError as exc:
        raise ConfigError(f"technical.indicators: {exc}") from None


@dataclass
class StreamState:
    """Everything the core remembers about one stream."""

    exchange: str
    symbol: str
    timeframe: str
    indicators: StreamingIndicatorSet
    volume_z: ZScore
    detector: SignalDetector
    regime: RegimeTracker
    rates: HitRates
    closes: deque[float]
    quote_volumes: deque[float]
    rules: dict[str, RuleState]
    candles: int = 0
    last_open_time: int = -1

    def to_state(self) -> dict[str, Any]:
        return {
            "exchange": self.exchange, "symbol": self.symbol, "timeframe": self.timeframe,
            "indicators": self.indicators.to_state(), "volume_z": self.volume_z.to_state(),
            "detector": self.detector.to_state(), "regime": self.regime.to_state(),
            "rates": self.rates.to_state(), "closes": list(self.closes),
            "quote_volumes": list(self.quote_volumes),
            "rules": {name: rule.to_state() for name, rule in self.rules.items()},
            "candles": self.candles, "last_open_time": self.last_open_time,
        }


class TechnicalCore:
    """Pure: candles in, signals and alerts out. `state_of(key)` / `restore` persist streams one by one.

    `touched` holds the keys of streams changed since their state was last saved; the shell
    removes a key once it has saved it.
    """

    def __init__(self, config: TechnicalConfig, model: DecisionModel | None = None) -> None:
        self.config = config
        self.model = model
        self.names = indicator_names(config)
        columns = StreamingIndicatorSet(self.names).columns
        self.rules: tuple[CompiledRule, ...] = compile_rules(
            config.alerts, list(dict.fromkeys([*CANDLE_FIELDS, *columns, VOLUME_Z]))
        )
        self.closes_kept = max(*RETURN_LAGS, longest_change_window(self.rules)) + 1
        self.streams: dict[str, StreamState] = {}
        self.touched: set[str] = set()  # streams changed since their state was last saved

    # -- persistence -----------------------------------------------------------------------------

    def state_of(self, key: str) -> dict[str, Any]:
        return self.streams[key].to_state()

    def restore(self, key: str, state: dict[str, Any]) -> None:
        """Continue stream `key` from a `state_of` snapshot (rules no longer configured are dropped)."""
        rules = {rule.rule.name: RuleState() for rule in self.rules}
        saved = state["rules"]
        rules.update({name: RuleState.from_state(saved[name]) for name in rules if name in saved})
        indicators = StreamingIndicatorSet.from_state(state["indicators"])
        if [spec.name for spec in indicators.specs] != self.names:
            raise ConfigError(
                f"the saved technical state of {key} has other indicators than technical.indicators asks "
                "for now: restore the previous setting, or delete the agent's state to start afresh"
            )
        self.streams[key] = StreamState(
            state["exchange"], state["symbol"], state["timeframe"], indicators,
            ZScore.from_state(state["volume_z"]), SignalDetector.from_state(self.config, state["detector"]),
            RegimeTracker.from_state(state["regime"]), HitRates.from_state(state["rates"]),
            deque(state["closes"], maxlen=self.closes_kept),
            deque(state["quote_volumes"], maxlen=QUOTE_VOLUME_WINDOW), rules, state["candles"],
            state["last_open_time"],
        )

    # -- candles ---------------------------------------------------------------------------------

    def handle(self, env: Envelope[CandleClosed]) -> list[Envelope[Event]]:
        candle = env.payload
        stream = self.streams.get(env.key) or self._new_stream(env.key, candle)
        if candle.open_time <= stream.last_open_time:
            return []  # seen before (re-read after a restart): the state already has it
        cfg = self.config
        threshold = 2.0 * cfg.fee
        stream.rates.settle(candle.open_time, candle.close, threshold)

        values = stream.indicators.update(candle)
        values[VOLUME_Z] = stream.volume_z.update(candle.volume)
        stream.closes.append(candle.close)
        stream.quote_volumes.append(candle.close * candle.volume)
        stream.candles += 1
        stream.last_open_time = candle.open_time
        self.touched.add(env.key)
        regime = stream.regime.update(_finite(values["volatility_20"]), _finite(values["sma_50"]))
        found = stream.detector.update(candle.close, values)
        decision = self._decide(stream, values, candle.close, regime)

        level = cfg.credible_level
        due = candle.open_time + cfg.horizon * timeframe_ms(candle.timeframe)
        signals = []
        for name, expects in found:
            signals.append(DetectedSignal(name=name, expects=expects,
                                          confidence=stream.rates.confidence(name, regime, level)))
            stream.rates.expect(name, expects, regime, candle.close, due)
        action, reason, probability, version = decision
        outcome_name = f"decision_{action}"
        stream.rates.expect(outcome_name, _ACTION_EXPECTS[action], regime, candle.close, due)
        payload = TechnicalSignal(
            exchange=candle.exchange, symbol=candle.symbol, timeframe=candle.timeframe,
            open_time=candle.open_time, close=candle.close, regime=regime,
            indicators={name: _finite(value) for name, value in values.items()},
            signals=signals,
            decision=Decision(action=action, reason=reason, probability=probability, model_version=version,
                              confidence=stream.rates.confidence(outcome_name, regime, level)),
        )
        out: list[Envelope[Event]] = [
            Envelope.create(payload, key=env.key, ts=env.ts, source=SOURCE, caused_by=env)
        ]
        out.extend(self._alerts(env, stream, values))
        return out

    def _new_stream(self, key: str, candle: CandleClosed) -> StreamState:
        stream = StreamState(
            candle.exchange, candle.symbol, candle.timeframe, StreamingIndicatorSet(self.names),
            ZScore(VOLUME_Z_PERIOD), SignalDetector(self.config), RegimeTracker(), HitRates(),
            deque(maxlen=self.closes_kept), deque(maxlen=QUOTE_VOLUME_WINDOW),
            {rule.rule.name: RuleState() for rule in self.rules},
        )
        self.streams[key] = stream
        return stream

    def _decide(
        self, stream: StreamState, values: dict[str, float | int | None], close: float, regime: str,
    ) -> tuple[str, str, float | None, int | None]:
        """(action, reason, leaf share, model version): the tree's answer once every feature is known."""
        if self.model is None:
            return "hold", NO_MODEL, None, None
        row = feature_row(values, close, values[VOLUME_Z], stream.closes)
        if not all(map(math.isfinite, row)):
            return "hold", "warming up: not every feature is known yet", None, None
        action, probability = self.model.predict(row)
        version = self.model.version
        return action, f"decision tree v{version} in a {regime} regime", probability, version

    # -- alerts ----------------------------------------------------------------------------------

    def _alerts(
        self, env: Envelope[CandleClosed], stream: StreamState, values: dict[str, float | int | None],
    ) -> list[Envelope[Event]]:
        candle = env.payload
        fields = {**values, **{name: getattr(candle, name) for name in CANDLE_FIELDS}}
        out: list[Envelope[Event]] = []
        for compiled in self.rules:
            rule = compiled.rule
            if not compiled.applies_to(candle.symbol, candle.timeframe):
                continue
            state = stream.rules[rule.name]
            holds, left, right = state.check(compiled.condition, fields, stream.closes)
            if not holds or not state.cooled_down(stream.candles, rule.cooldown):
                continue
            if compiled.top is not None and self.rank(env.key) > compiled.top:
                continue
            state.last_fired = stream.candles
            message = f"{candle.symbol} {candle.timeframe}: {rule.when} ({_show(left)} vs {_show(right)})"
            alert = AlertRaised(
                name=rule.name, severity=rule.severity, message=message, symbol=candle.symbol,
                details={"rule": rule.name, "when": rule.when, "stream": env.key, "left": left,
                         "right": right, "open_time": candle.open_time},
            )
            out.append(Envelope.create(alert, key=candle.symbol, ts=env.ts, source=SOURCE, caused_by=env,
                                       discriminator=f"{env.key}:{rule.name}"))
        return out

    def rank(self, key: str) -> int:
        """1-based rank of stream `key` among the streams of its timeframe by recent quote volume."""
        timeframe = self.streams[key].timeframe
        mine = (-sum(self.streams[key].quote_volumes), key)
        return 1 + sum(
            1 for other, stream in self.streams.items()
            if stream.timeframe == timeframe and (-sum(stream.quote_volumes), other) < mine
        )


_ACTION_EXPECTS = {"buy": "up", "sell": "down", "hold": "flat"}


def _finite(value: float | int | None) -> float | int | None:
    if value is None or isinstance(value, int):
        return value
    return value if math.isfinite(value) else None


def _show(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.6g}"

