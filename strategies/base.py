"""The Strategy protocol: a pure object that turns closed candles (and optional signals) into intents.

A strategy decides at a candle's close and its market intents are meant for the next candle's
open. It has a `name`, a declared parameter space (`Param` specs the optimiser can search),
explicit parameters (a frozen pydantic model, validated against the space), and state that
`to_state`/`from_state` round-trips as JSON so a restarted process continues exactly.

Every intent carries a decision trace (the candle, the signal values used, the strategy and its
parameters; the orchestrator adds the regime) and a deterministic `decision_id`: uuid5 of the
strategy, instrument, candle open time and action, so a replayed candle never trades twice.
`GuardedStrategy` isolates one strategy's errors: it returns no intents and a `StrategyFailure`
record, and disables that strategy alone.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, ClassVar, Literal, Protocol, Self

import annotated_types
from pydantic import BaseModel, ConfigDict, JsonValue, ValidationError

from config.errors import ConfigError
from indicators.streaming import StreamingIndicator
from topics.market import CandleClosed
from topics.technical import TechnicalSignal
from topics.trading import OrderIntent, Side

DECISION_NAMESPACE = uuid.UUID("5b0f7c1e-51a7-4c1e-9a55-3f4e0e2d7a10")
PRICE_STEP = Decimal("0.00000001")


class StrategyConfigError(ConfigError):
    """A strategy's name or parameters are invalid; the message names the key, value and bounds."""


@dataclass(frozen=True, slots=True)
class Param:
    """One tunable parameter: its type and inclusive bounds (bools have none), for validation and search."""

    name: str
    kind: Literal["int", "float", "bool"]
    default: int | float | bool
    low: float | None = None
    high: float | None = None

    def check(self, strategy: str, value: object) -> None:
        """Raise StrategyConfigError naming strategy, key, value and bounds if `value` is out of the space."""
        where = f"strategy {strategy}: parameter {self.name}={value!r}"
        if self.kind == "bool":
            if not isinstance(value, bool):
                raise StrategyConfigError(f"{where} must be true or false")
            return
        is_int = isinstance(value, int) and not isinstance(value, bool)
        if self.kind == "int" and not is_int:
            raise StrategyConfigError(f"{where} must be an integer in [{self.low:g}, {self.high:g}]")
        if not (is_int or isinstance(value, float)) or not math.isfinite(float(value)):  # type: ignore[arg-type]
            raise StrategyConfigError(f"{where} must be a number in [{self.low:g}, {self.high:g}]")
        number = float(value)  # type: ignore[arg-type]
        if (self.low is not None and number < self.low) or (self.high is not None and number > self.high):
            raise StrategyConfigError(f"{where} is outside its bounds [{self.low:g}, {self.high:g}]")


class StrategyParams(BaseModel):
    """Base of each strategy's parameters: immutable, unknown keys are errors. Give every numeric field
    `ge` and `le` bounds: `param_space` reads them, so the declared space never drifts from the model."""

    model_config = ConfigDict(frozen=True, extra="forbid")


def param_space(model: type[StrategyParams]) -> tuple[Param, ...]:
    """The `Param` specs of a parameter model, from its field types, defaults and ge/le bounds."""
    specs = []
    for key, field in model.model_fields.items():
        kind = {bool: "bool", int: "int", float: "float"}[field.annotation]  # type: ignore[index]
        low = next((float(m.ge) for m in field.metadata if isinstance(m, annotated_types.Ge)), None)
        high = next((float(m.le) for m in field.metadata if isinstance(m, annotated_types.Le)), None)
        if kind != "bool" and (low is None or high is None):
            raise TypeError(f"{model.__name__}.{key} needs ge and le bounds to be searchable")
        specs.append(Param(key, kind, field.default, low, high))  # type: ignore[arg-type]
    return tuple(specs)


@dataclass(frozen=True, slots=True)
class Position:
    """What the strategy holds on the instrument: signed quantity (positive long, negative short)."""

    quantity: Decimal = Decimal(0)

    @property
    def is_flat(self) -> bool:
        return self.quantity == 0


FLAT = Position()


class Strategy(Protocol):
    """What the orchestrator and the backtest drive. Implementations must be pure and deterministic."""

    name: ClassVar[str]
    space: ClassVar[tuple[Param, ...]]
    Params: ClassVar[type[StrategyParams]]
    params: StrategyParams

    def __init__(self, params: StrategyParams | None = None) -> None: ...

    def on_candle(
        self, candle: CandleClosed, signals: TechnicalSignal | None, position: Position
    ) -> list[OrderIntent]: ...

    def to_state(self) -> dict[str, Any]: ...

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Self: ...


def make_params(strategy: type[Strategy], raw: Mapping[str, object] | None = None) -> StrategyParams:
    """`strategy`'s parameters from `raw` (defaults for missing keys), checked against its space."""
    raw = dict(raw or {})
    known = {param.name: param for param in strategy.space}
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise StrategyConfigError(f"strategy {strategy.name}: unknown parameter(s) {', '.join(unknown)}; "
                                  f"known: {', '.join(known)}")
    for key, value in raw.items():
        known[key].check(strategy.name, value)
    try:
        return strategy.Params(**raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise StrategyConfigError(f"strategy {strategy.name}: {first['msg']} (parameters {raw})") from None


def decision_id(strategy: str, candle: CandleClosed, action: str) -> str:
    """uuid5 of strategy, exchange:symbol, candle open time and action: the same decision, the same id."""
    name = f"{strategy}|{candle.exchange}:{candle.symbol}|{candle.open_time}|{action}"
    return str(uuid.uuid5(DECISION_NAMESPACE, name))


def to_price(value: float) -> Decimal:
    """A float market price as a Decimal at 1e-8, the precision intents carry."""
    return Decimal(repr(value)).quantize(PRICE_STEP)


def candle_trace(candle: CandleClosed) -> dict[str, JsonValue]:
    """The candle as it appears in a decision trace."""
    return {
        "timeframe": candle.timeframe, "open_time": candle.open_time, "close_time": candle.close_time,
        "open": candle.open, "high": candle.high, "low": candle.low, "close": candle.close,
        "volume": candle.volume,
    }


def make_intent(
    strategy: str, params: StrategyParams, candle: CandleClosed, *, action: str, side: Side, reason: str,
    signals: Mapping[str, JsonValue], technical: TechnicalSignal | None = None,
    extra: Mapping[str, JsonValue] | None = None, **fields: Any,
) -> OrderIntent:
    """A market intent for the next open, with the decision trace (plus `extra`) and deterministic id."""
    trace: dict[str, JsonValue] = {**(extra or {}),
        "strategy": strategy, "params": params.model_dump(mode="json"), "action": action, "reason": reason,
        "candle": candle_trace(candle), "signals": dict(signals),
    }
    if technical is not None:
        trace["technical"] = {"open_time": technical.open_time, "regime": technical.regime,
                              "decision": technical.decision.action}
    return OrderIntent(decision_id=decision_id(strategy, candle, action), strategy=strategy,
                       exchange=candle.exchange, symbol=candle.symbol, side=side, trace=trace, **fields)


def close_intent(
    strategy: str, params: StrategyParams, candle: CandleClosed, position: Position, *, action: str,
    reason: str, signals: Mapping[str, JsonValue], fraction: Decimal = Decimal(1),
    technical: TechnicalSignal | None = None,
) -> OrderIntent:
    """A reduce-only market intent that closes `fraction` of the position (all of it by default)."""
    side: Side = "sell" if position.quantity > 0 else "buy"
    return make_intent(strategy, params, candle, action=action, side=side, reason=reason, signals=signals,
                       technical=technical, size=abs(position.quantity) * fraction, reduce_only=True)


@dataclass(frozen=True, slots=True)
class StrategyFailure:
    """A strategy raised on a candle: it is disabled; the shell publishes this as `StrategyFailed`."""

    strategy: str
    exchange: str
    symbol: str
    open_time: int
    error: str
    message: str


class GuardedStrategy:
    """Runs a strategy so its errors never escape: a raise returns no intents plus a failure record,
    and disables the strategy (its state may be half-updated, so it must not decide again)."""

    __slots__ = ("failure", "strategy")

    def __init__(self, strategy: Strategy, failure: StrategyFailure | None = None) -> None:
        self.strategy = strategy
        self.failure = failure

    @property
    def disabled(self) -> bool:
        return self.failure is not None

    def on_candle(
        self, candle: CandleClosed, signals: TechnicalSignal | None, position: Position
    ) -> tuple[list[OrderIntent], StrategyFailure | None]:
        """(intents, None) normally; ([], failure) on the candle it raises; ([], None) once disabled."""
        if self.failure is not None:
            return [], None
        try:
            return self.strategy.on_candle(candle, signals, position), None
        except Exception as exc:  # isolating any strategy bug is this wrapper's one job
            self.failure = StrategyFailure(self.strategy.name, candle.exchange, candle.symbol,
                                           candle.open_time, type(exc).__name__, str(exc))
            return [], self.failure


class IndicatorStrategy:
    """Shared plumbing of the built-ins: parameters, streaming indicators and a few plain fields as state.

    Subclasses set `name`, `space`, `Params`, build their indicators in `_setup` (into
    `self.indicators`) and list JSON-plain attributes that change in `_fields`.
    """

    name: ClassVar[str]
    space: ClassVar[tuple[Param, ...]]
    Params: ClassVar[type[StrategyParams]]
    _fields: ClassVar[tuple[str, ...]] = ()

    def __init__(self, params: StrategyParams | None = None) -> None:
        self.params = params if params is not None else make_params(type(self))  # type: ignore[arg-type]
        if not isinstance(self.params, self.Params):
            raise StrategyConfigError(f"strategy {self.name} needs {self.Params.__name__}, "
                                      f"got {type(self.params).__name__}")
        self.indicators: dict[str, StreamingIndicator] = {}
        self._setup()

    def _setup(self) -> None:
        raise NotImplementedError

    def to_state(self) -> dict[str, Any]:
        """`{"strategy", "params", "indicators", "fields"}`: JSON-serialisable, enough to continue."""
        return {
            "strategy": self.name, "params": self.params.model_dump(mode="json"),
            "indicators": {key: indicator.to_state() for key, indicator in self.indicators.items()},
            "fields": {name: getattr(self, name) for name in self._fields},
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Self:
        """The strategy a `to_state()` snapshot describes; a wrong or incomplete one is a ValueError."""
        if not isinstance(state, dict) or state.get("strategy") != cls.name:
            raise ValueError(f"state is not a {cls.name} strategy snapshot")
        try:
            restored = cls(cls.Params(**state["params"]))
            for key, indicator in restored.indicators.items():
                restored.indicators[key] = type(indicator).from_state(state["indicators"][key])
            for name in cls._fields:
                setattr(restored, name, state["fields"][name])
        except (KeyError, TypeError, ValidationError) as exc:
            raise ValueError(f"{cls.name} state is incomplete or malformed: {exc}") from exc
        return restored
