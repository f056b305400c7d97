"""User alert rules, checked against the agent's columns and evaluated on each candle of a stream.

The settings parse each rule's condition (`config.alert_rules`); here the names it reads are
checked against what the agent computes, and a rule fires when its condition holds on a
candle — a comparison on every candle where it is true, a crossing on the candle it crosses —
unless it fired on that stream fewer than `cooldown` candles ago.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from config.alert_rules import ChangePct, Column, Condition, Number, Operand, parse_condition
from config.errors import ConfigError
from config.settings import AlertRule
from indicators import Crossover
from indicators.crossover import DOWN, UP

CANDLE_FIELDS = ("open", "high", "low", "close", "volume")
Values = dict[str, float | int | None]


@dataclass(frozen=True)
class CompiledRule:
    """A rule with its condition parsed and its scope resolved."""

    rule: AlertRule
    condition: Condition
    symbols: frozenset[str]  # empty: every symbol
    top: int | None  # only the `top` streams of the timeframe by quote volume
    timeframes: frozenset[str]  # empty: every timeframe

    def applies_to(self, symbol: str, timeframe: str) -> bool:
        """Whether the rule watches this stream at all (top-N membership is checked when it fires)."""
        symbol_ok = not self.symbols or symbol in self.symbols
        return symbol_ok and (not self.timeframes or timeframe in self.timeframes)


def compile_rules(rules: Sequence[AlertRule], known: Sequence[str]) -> tuple[CompiledRule, ...]:
    """Rules whose every name is one of `known`; ConfigError naming the rule, the name and some valid ones."""
    compiled = []
    allowed = set(known)
    for rule in rules:
        condition = parse_condition(rule.when)
        for name in condition.columns:
            if name not in allowed:
                raise ConfigError(_unknown(rule, name, known))
        top = int(rule.symbols[3:]) if isinstance(rule.symbols, str) else None
        symbols = frozenset(rule.symbols) if isinstance(rule.symbols, list) else frozenset()
        compiled.append(CompiledRule(rule, condition, symbols, top, frozenset(rule.timeframes)))
    return tuple(compiled)


def _unknown(rule: AlertRule, name: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    shown = ", ".join(known[:12])
    more = f" and {len(known) - 12} more" if len(known) > 12 else ""
    return (
        f"alert rule {rule.name!r}: unknown indicator {name!r} in {rule.when!r}; {hint}"
        f"known: {shown}{more} (compute others with technical.indicators, e.g. rsi_7)"
    )


def longest_change_window(rules: Sequence[CompiledRule]) -> int:
    """The most closes any change_pct(N) of the rules needs to look back."""
    return max((rule.condition.longest_change_window for rule in rules), default=0)


def operand_value(operand: Operand, values: Values, closes: Sequence[float]) -> float | None:
    """An operand's value on this candle; None while it is not known (warm-up, too little history)."""
    if isinstance(operand, Number):
        return operand.value
    if isinstance(operand, ChangePct):
        if len(closes) <= operand.window:
            return None
        return (closes[-1] / closes[-1 - operand.window] - 1.0) * 100.0
    assert isinstance(operand, Column)
    value = values.get(operand.name)
    return None if value is None else float(value)


class RuleState:
    """What one rule remembers about one stream: the side of a crossing and when it last fired."""

    def __init__(self, cross: Crossover | None = None, last_fired: int | None = None) -> None:
        self.cross = cross or Crossover()
        self.last_fired = last_fired  # candle number (per stream) of the last alert

    def check(
        self, condition: Condition, values: Values, closes: Sequence[float]
    ) -> tuple[bool, float | None, float | None]:
        """(holds, left value, right value) on this candle; crossings keep their side for the next."""
        left = operand_value(condition.left, values, closes)
        right = operand_value(condition.right, values, closes)
        operator = condition.operator
        if operator in ("crosses_above", "crosses_below"):
            side = self.cross.update(left, right)
            return side == (UP if operator == "crosses_above" else DOWN), left, right
        if left is None or right is None:
            return False, left, right
        holds = {"<": left < right, "<=": left <= right, ">": left > right, ">=": left >= right}[operator]
        return holds, left, right

    def cooled_down(self, candle: int, cooldown: int) -> bool:
        return self.last_fired is None or candle - self.last_fired >= cooldown

    def to_state(self) -> dict[str, Any]:
        return {"cross": self.cross.to_state(), "last_fired": self.last_fired}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> RuleState:
        return cls(Crossover.from_state(state["cross"]), state["last_fired"])
