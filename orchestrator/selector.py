"""Which strategy runs in which market regime: `strategies.yaml`, validated, hot-reloadable, rankable.

The mapping is pure: `parse_strategies` turns the YAML's data into a `StrategiesConfig` (or one
clear `SelectorConfigError` naming the place, key and value), and `StrategySelector` picks a
`Choice` (strategy + validated parameters) for a regime. Only `load_strategies` and
`reload_if_changed` touch the file, so an agent can poll the file's mtime and swap configs without
restarting. Backtest rankings (regime -> strategy names, best first), when given, reorder a
regime's candidates ahead of the YAML order.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Literal, cast

import yaml

import config
from config.errors import ConfigError
from strategies import STRATEGIES
from strategies.base import StrategyConfigError, StrategyParams, make_params

REGIMES = ("bull", "bear", "neutral", "high_volatility", "unknown")
HANDOFF_MODES = ("keep", "reduce", "close")
HandoffMode = Literal["keep", "reduce", "close"]
TOP_KEYS = ("version", "default", "handoff", "regimes")


class SelectorConfigError(ConfigError):
    """strategies.yaml (or a ranking) is invalid; the message names the place, key and value."""


@dataclass(frozen=True, slots=True)
class Choice:
    """A strategy and its validated parameters."""

    strategy: str
    params: StrategyParams

    @property
    def key(self) -> str:
        """Stable identity of the pair: name plus parameters as sorted JSON."""
        return f"{self.strategy}:{json.dumps(self.params.model_dump(mode='json'), sort_keys=True)}"


@dataclass(frozen=True, slots=True)
class Handoff:
    """What happens to an open position when the regime picks another strategy (orchestrator.switching)."""

    mode: HandoffMode = "close"
    reduce_fraction: Decimal = Decimal("0.5")


@dataclass(frozen=True, slots=True)
class StrategiesConfig:
    """The parsed strategies.yaml: candidates per regime (first = preferred), the fallback, the hand-off."""

    regimes: Mapping[str, tuple[Choice, ...]]
    default: Choice
    handoff: Handoff


def _known(names: Sequence[str]) -> str:
    return ", ".join(names)


def parse_choice(raw: object, where: str) -> Choice:
    """`{strategy: name, params: {...}}` (or just the name) as a validated Choice."""
    if isinstance(raw, str):
        raw = {"strategy": raw}
    if not isinstance(raw, dict):
        raise SelectorConfigError(f"{where}: expected a mapping with strategy and params, got {raw!r}")
    extra = sorted(set(raw) - {"strategy", "params"})
    if extra:
        raise SelectorConfigError(f"{where}: unknown key(s) {', '.join(map(str, extra))}; "
                                  "allowed: strategy, params")
    name = raw.get("strategy")
    if name not in STRATEGIES:
        raise SelectorConfigError(f"{where}: unknown strategy {name!r}; known: {_known(sorted(STRATEGIES))}")
    params = raw.get("params") or {}
    if not isinstance(params, dict):
        raise SelectorConfigError(f"{where}.params: expected a mapping, got {params!r}")
    try:
        return Choice(name, make_params(STRATEGIES[name], params))
    except StrategyConfigError as exc:
        raise SelectorConfigError(f"{where}.params: {exc}") from None


def _parse_handoff(raw: object, where: str) -> Handoff:
    if raw is None:
        return Handoff()
    if not isinstance(raw, dict):
        raise SelectorConfigError(f"{where}: expected a mapping with mode and reduce_fraction, got {raw!r}")
    extra = sorted(set(raw) - {"mode", "reduce_fraction"})
    if extra:
        raise SelectorConfigError(f"{where}: unknown key(s) {', '.join(map(str, extra))}; "
                                  "allowed: mode, reduce_fraction")
    mode = raw.get("mode", "close")
    if mode not in HANDOFF_MODES:
        raise SelectorConfigError(f"{where}.mode={mode!r} is not one of {_known(HANDOFF_MODES)}")
    fraction_raw = raw.get("reduce_fraction", "0.5")
    try:
        fraction = Decimal(str(fraction_raw))
    except InvalidOperation:
        fraction = Decimal("NaN")
    if isinstance(fraction_raw, bool) or not (fraction.is_finite() and 0 < fraction < 1):
        raise SelectorConfigError(f"{where}.reduce_fraction={fraction_raw!r} must be a number above 0 "
                                  "and below 1")
    return Handoff(cast(HandoffMode, mode), fraction)


def parse_strategies(data: object, source: str = "strategies.yaml") -> StrategiesConfig:
    """The validated config from strategies.yaml's data; errors start with `source` and the key path."""
    if not isinstance(data, dict):
        raise SelectorConfigError(f"{source}: expected a mapping with regimes, default and handoff")
    extra = sorted(set(map(str, data)) - set(TOP_KEYS))
    if extra:
        raise SelectorConfigError(f"{source}: unknown key(s) {', '.join(extra)}; allowed: {_known(TOP_KEYS)}")
    if data.get("version", 1) != 1:
        raise SelectorConfigError(f"{source}: version={data.get('version')!r} is not supported; use 1")
    regimes_raw = data.get("regimes")
    if not isinstance(regimes_raw, dict) or not regimes_raw:
        raise SelectorConfigError(f"{source}: regimes must map at least one regime to strategies")
    regimes: dict[str, tuple[Choice, ...]] = {}
    for regime, entries in regimes_raw.items():
        if regime not in REGIMES:
            raise SelectorConfigError(f"{source}: unknown regime {regime!r}; known: {_known(REGIMES)}")
        listed = entries if isinstance(entries, list) else [entries]
        if not listed:
            raise SelectorConfigError(f"{source}: regimes.{regime} lists no strategy")
        regimes[regime] = tuple(parse_choice(entry, f"{source}: regimes.{regime}[{i}]")
                                for i, entry in enumerate(listed))
    default = parse_choice(data.get("default", "risk_off"), f"{source}: default")
    return StrategiesConfig(regimes, default, _parse_handoff(data.get("handoff"), f"{source}: handoff"))


Rankings = Mapping[str, Sequence[str]]


class StrategySelector:
    """Regime -> Choice. A regime the config does not list gets `default`."""

    def __init__(self, config: StrategiesConfig, rankings: Rankings | None = None) -> None:
        self.config = config
        self.rankings = _check_rankings(rankings or {})

    def with_rankings(self, rankings: Rankings | None) -> StrategySelector:
        """The same config ordered by backtest `rankings` (regime -> names, best first); None clears them."""
        return StrategySelector(self.config, rankings)

    def candidates(self, regime: str) -> tuple[Choice, ...]:
        """The regime's choices, best first: ranked names (YAML params if listed there, else defaults),
        then the remaining YAML entries in file order."""
        listed = self.config.regimes.get(regime, (self.config.default,))
        ranked = []
        for name in self.rankings.get(regime, ()):
            ranked.append(next((c for c in listed if c.strategy == name), None)
                          or Choice(name, make_params(STRATEGIES[name])))
        seen = {choice.key for choice in ranked}
        return (*ranked, *(choice for choice in listed if choice.key not in seen))

    def choose(self, regime: str) -> Choice:
        """The strategy to run in `regime`."""
        return self.candidates(regime)[0]

    def choices(self) -> tuple[Choice, ...]:
        """Every choice any regime can select, each once, in a stable order (for warm-up)."""
        every: dict[str, Choice] = {}
        for regime in (*REGIMES, *self.config.regimes):
            for choice in self.candidates(regime):
                every.setdefault(choice.key, choice)
        every.setdefault(self.config.default.key, self.config.default)
        return tuple(every.values())


def _check_rankings(rankings: Rankings) -> dict[str, tuple[str, ...]]:
    checked = {}
    for regime, names in rankings.items():
        if regime not in REGIMES:
            raise SelectorConfigError(f"rankings: unknown regime {regime!r}; known: {_known(REGIMES)}")
        for name in names:
            if name not in STRATEGIES:
                raise SelectorConfigError(f"rankings.{regime}: unknown strategy {name!r}; "
                                          f"known: {_known(sorted(STRATEGIES))}")
        checked[regime] = tuple(names)
    return checked


def default_strategies_path() -> Path:
    """The strategies.yaml shipped with the package."""
    return Path(config.__file__).with_name("strategies.yaml")


def load_strategies(path: Path | str) -> StrategiesConfig:
    """Read and validate a strategies.yaml; a missing or unparsable file is one SelectorConfigError."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SelectorConfigError(f"cannot read {path}: {exc.strerror}; pass an existing strategies.yaml"
                                  ) from None
    except yaml.YAMLError as exc:
        raise SelectorConfigError(f"{path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    return parse_strategies(data, str(path))


def reload_if_changed(path: Path | str, mtime: float | None) -> tuple[StrategiesConfig | None, float]:
    """(new config, its mtime) when the file's mtime differs from `mtime`, else (None, mtime).

    An invalid file raises SelectorConfigError: the caller keeps its current config and reports it;
    the unchanged `mtime` it still holds makes the next poll try again.
    """
    try:
        current = Path(path).stat().st_mtime
    except OSError as exc:
        raise SelectorConfigError(f"cannot read {path}: {exc.strerror}; pass an existing strategies.yaml"
                                  ) from None
    if mtime is not None and current == mtime:
        return None, mtime
    return load_strategies(path), current
