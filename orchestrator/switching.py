"""Runs the regime's strategy per instrument and switches strategies with a configured hand-off (pure).

`StrategyOrchestrator.on_candle(candle, signals, position, regime)` asks the selector which
strategy the regime wants on the candle's stream (an operator's pin wins over the selector).
When that differs from the active one:
- flat: switch at once; the new strategy decides on this candle;
- `keep`: the old strategy keeps managing the open position (and only it decides) until the
  position is reported flat; at that candle the new one takes over and decides;
- `reduce`: a reduce-only intent for `reduce_fraction` of the position, then switch; the new
  strategy manages the rest from the next candle;
- `close`: a reduce-only intent for the whole position, then switch; the new strategy decides
  from the next candle.
Every strategy any regime can select runs on every candle (with a flat position, its intents
dropped) so its indicators are warm when it is switched in. Every intent's trace gets the regime,
the active strategy and its parameters, and `selected_by`: where this candle's choice came from
(pin, stream_rankings, rankings or strategies.yaml). A strategy that raises is disabled alone
(`StrategyFailure` in the step's `failures`). `to_state`/`from_state` make a restart continue with
identical intents.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Any

from pydantic import JsonValue

from orchestrator.selector import Choice, Handoff, SelectedBy, StrategySelector, parse_choice
from strategies import STRATEGIES
from strategies.base import FLAT, GuardedStrategy, Position, StrategyFailure, close_intent
from topics.market import CandleClosed
from topics.technical import TechnicalSignal
from topics.trading import OrderIntent


@dataclass(frozen=True, slots=True)
class Step:
    """What one candle produced: the intents to send to risk and the strategies that failed on it."""

    intents: list[OrderIntent] = field(default_factory=list)
    failures: list[StrategyFailure] = field(default_factory=list)


@dataclass(slots=True)
class _Instrument:
    regime: str | None = None
    active: Choice | None = None
    pending: Choice | None = None  # keep mode: the successor waiting for the position to be flat
    strategies: dict[str, GuardedStrategy] = field(default_factory=dict)  # by Choice.key


def _dump_choice(choice: Choice | None) -> dict[str, JsonValue] | None:
    if choice is None:
        return None
    return {"strategy": choice.strategy, "params": choice.params.model_dump(mode="json")}


class StrategyOrchestrator:
    """Per instrument (`exchange:symbol:timeframe`): the regime, the active strategy, and the hand-off."""

    def __init__(self, selector: StrategySelector, handoff: Handoff | None = None) -> None:
        self.selector = selector
        self.handoff = handoff if handoff is not None else selector.config.handoff
        self._instruments: dict[str, _Instrument] = {}
        self.pins: dict[str, Choice] = {}  # instrument -> the strategy an operator pinned it to

    def pin(self, key: str, choice: Choice | None) -> None:
        """Run `choice` on the instrument `key` whatever the regime (None: the selector decides again).

        The switch happens at the instrument's next candle, with the configured hand-off."""
        if choice is None:
            self.pins.pop(key, None)
        else:
            self.pins[key] = choice

    def use_selector(self, selector: StrategySelector) -> None:
        """Swap in a reloaded (or re-ranked) selector; it takes effect from the next candle."""
        self.selector = selector

    def active(self, key: str) -> Choice | None:
        """The strategy currently deciding for the instrument `key`, if any candle was seen."""
        instrument = self._instruments.get(key)
        return instrument.active if instrument is not None else None

    def on_candle(
        self, candle: CandleClosed, signals: TechnicalSignal | None, position: Position,
        regime: str | None = None,
    ) -> Step:
        """The intents for one candle; `regime` None keeps the last one (first: the signal's, or unknown)."""
        inst = self._instruments.setdefault(candle.key, _Instrument())
        regime = regime or inst.regime or (signals.regime if signals is not None else "unknown")
        previous_regime, inst.regime = inst.regime, regime
        pinned = self.pins.get(candle.key)
        target = pinned or self.selector.choose(regime, candle.key)
        selected_by: SelectedBy = "pin" if pinned else self.selector.selected_by(regime, candle.key)
        handoff: list[OrderIntent] = []
        decides = True
        if inst.active is None or position.is_flat:
            inst.active, inst.pending = target, None
        elif target.key == inst.active.key:
            inst.pending = None
        elif self.handoff.mode == "keep":
            inst.pending = target
        else:
            fraction = Decimal(1) if self.handoff.mode == "close" else self.handoff.reduce_fraction
            old = inst.active
            handoff.append(close_intent(
                old.strategy, old.params, candle, position, action=f"handoff_{self.handoff.mode}",
                fraction=fraction, signals={},
                reason=f"regime {previous_regime} -> {regime}: {self.handoff.mode} hand-off from "
                       f"{old.strategy} to {target.strategy}",
            ))
            inst.active, inst.pending, decides = target, None, False
        intents, failures = self._run(inst, candle, signals, position, decides)
        return Step([self._annotate(intent, inst, regime, selected_by) for intent in (*handoff, *intents)],
                    failures)

    def _run(
        self, inst: _Instrument, candle: CandleClosed, signals: TechnicalSignal | None, position: Position,
        decides: bool,
    ) -> tuple[list[OrderIntent], list[StrategyFailure]]:
        """Run every selectable strategy (plus the active and pending ones); keep the active one's intents."""
        assert inst.active is not None  # set by on_candle before it runs anything
        wanted = {choice.key: choice for choice in self.selector.choices(candle.key)}
        for choice in (inst.active, inst.pending):
            if choice is not None:
                wanted.setdefault(choice.key, choice)
        intents: list[OrderIntent] = []
        failures: list[StrategyFailure] = []
        for key in sorted(wanted):
            if key not in inst.strategies:
                choice = wanted[key]
                inst.strategies[key] = GuardedStrategy(STRATEGIES[choice.strategy](choice.params))
            is_active = key == inst.active.key
            seen = position if is_active else FLAT
            produced, failure = inst.strategies[key].on_candle(candle, signals, seen)
            if failure is not None:
                failures.append(failure)
            if is_active and decides:
                intents = produced
        return intents, failures

    def _annotate(self, intent: OrderIntent, inst: _Instrument, regime: str, selected_by: SelectedBy
                  ) -> OrderIntent:
        trace: dict[str, JsonValue] = {
            **intent.trace, "regime": regime, "active": _dump_choice(inst.active),
            "pending": _dump_choice(inst.pending), "handoff_mode": self.handoff.mode,
            "selected_by": selected_by,
        }
        return intent.model_copy(update={"trace": trace})

    def to_state(self) -> dict[str, Any]:
        """JSON-serialisable: the pins, and per instrument the regime, active and pending choices and each
        strategy's state."""
        instruments = {
            key: {
                "regime": inst.regime, "active": _dump_choice(inst.active),
                "pending": _dump_choice(inst.pending),
                "strategies": {
                    choice_key: {"state": guarded.strategy.to_state(),
                                 "failure": asdict(guarded.failure) if guarded.failure else None}
                    for choice_key, guarded in inst.strategies.items()
                },
            }
            for key, inst in self._instruments.items()
        }
        pins = {key: _dump_choice(choice) for key, choice in sorted(self.pins.items())}
        return {"version": 1, "pins": pins, "instruments": instruments}

    @classmethod
    def from_state(
        cls, state: dict[str, Any], selector: StrategySelector, handoff: Handoff | None = None
    ) -> StrategyOrchestrator:
        """The orchestrator a `to_state()` snapshot describes, with the given (possibly reloaded) selector."""
        if not isinstance(state, dict) or state.get("version") != 1:
            raise ValueError("state is not a version 1 StrategyOrchestrator snapshot")
        restored = cls(selector, handoff)
        try:
            for key, raw in state["instruments"].items():
                inst = _Instrument(regime=raw["regime"])
                active, pending = raw["active"], raw["pending"]
                inst.active = parse_choice(active, f"state {key}.active") if active else None
                inst.pending = parse_choice(pending, f"state {key}.pending") if pending else None
                for choice_key, saved in raw["strategies"].items():
                    strategy = STRATEGIES[saved["state"]["strategy"]].from_state(saved["state"])
                    failure = StrategyFailure(**saved["failure"]) if saved["failure"] else None
                    inst.strategies[choice_key] = GuardedStrategy(strategy, failure)
                restored._instruments[key] = inst
            for key, pinned in state.get("pins", {}).items():
                restored.pins[key] = parse_choice(pinned, f"state pins.{key}")
        except (KeyError, TypeError) as exc:
            raise ValueError(f"StrategyOrchestrator state is incomplete or malformed: {exc}") from exc
        return restored
