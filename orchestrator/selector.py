"""Which strategy runs in which market regime: `strategies.yaml`, validated, hot-reloadable, rankable.

The mapping is pure: `parse_strategies` turns the YAML's data into a `StrategiesConfig` (or one
clear `SelectorConfigError` naming the place, key and value), and `StrategySelector` picks a
`Choice` (strategy + validated parameters) for a regime. Only `load_strategies` and
`reload_if_changed` touch the file, so an agent can poll the file's mtime and swap configs without
restarting.

Backtest rankings (regime -> strategies best first: names, or `Choice`s carrying the optimiser's
parameters), when given, reorder a regime's candidates ahead of the YAML order. They come in two
scopes: per stream (`exchange:symbol:timeframe`, what the optimiser measured there) and for every
stream (the fallback for a stream or regime without its own). `rankings_from` turns the
optimiser's `StrategyRanked` events into either; `selector_from` builds a selector with both.
An operator's pin (orchestrator.switching) wins over rankings, which win over strategies.yaml.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Literal, cast

import yaml

import config
from config.errors import ConfigError
from strategies import STRATEGIES
from strategies.base import StrategyConfigError, StrategyParams, make_params
from topics.backtest import StrategyRanked

REGIMES = ("bull", "bear", "neutral", "high_volatility", "unknown")
HANDOFF_MODES = ("keep", "reduce", "close")
HandoffMode = Literal["keep", "reduce", "close"]
TOP_KEYS = ("version", "default", "handoff", "regimes")
MIN_BARS = 100  # out-of-sample bars below which a per-regime score is noise
MIN_STRATEGIES = 2  # one ranked strategy says nothing about the others: keep the YAML order
# Where a stream's strategy came from (the `selected_by` of each intent's trace): an operator's pin,
# the stream's own rankings, the rankings over every stream, or strategies.yaml.
SelectedBy = Literal["pin", "stream_rankings", "rankings", "strategies.yaml"]


class SelectorConfigError(ConfigError):
    """strategies.yaml (or a ranking) is invalid; the message names the place, key and value."""


@dataclass(frozen=True, slots=True)
class Choice:
    """A strategy and its validated parameters."""

    strategy: str
    params: StrategyParams
    # Stable identity of the pair: name plus parameters as sorted JSON (computed once: it is looked up
    # for every strategy on every candle).
    key: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        params = json.dumps(self.params.model_dump(mode="json"), sort_keys=True)
        object.__setattr__(self, "key", f"{self.strategy}:{params}")


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


Rankings = Mapping[str, Sequence[str | Choice]]  # regime -> best first: a name (YAML params) or a Choice
StreamRankings = Mapping[str, Rankings]  # stream (exchange:symbol:timeframe) -> its rankings


class StrategySelector:
    """(regime, stream) -> Choice. A regime the config does not list gets `default`.

    A regime's ranking is the stream's own if it has one, else the every-stream one, else none (the
    YAML order)."""

    def __init__(
        self, config: StrategiesConfig, rankings: Rankings | None = None,
        streams: StreamRankings | None = None,
    ) -> None:
        self.config = config
        self.rankings = _check_rankings(rankings or {}, "rankings")
        self.streams = {stream: _check_rankings(ranked, f"rankings[{stream}]")
                        for stream, ranked in sorted((streams or {}).items())}
        self._candidates: dict[tuple[str, str | None], tuple[Choice, ...]] = {}  # the selector never changes
        self._choices: dict[str | None, tuple[Choice, ...]] = {}

    def with_rankings(self, rankings: Rankings | None, streams: StreamRankings | None = None
                      ) -> StrategySelector:
        """The same config ordered by backtest `rankings` (regime -> strategies, best first) for every stream
        and `streams` (stream -> such rankings) for single streams; None clears them."""
        return StrategySelector(self.config, rankings, streams)

    def _ranking(self, regime: str, stream: str | None) -> tuple[tuple[str | Choice, ...], SelectedBy]:
        own = self.streams.get(stream, {}) if stream is not None else {}
        if regime in own:
            return own[regime], "stream_rankings"
        if regime in self.rankings:
            return self.rankings[regime], "rankings"
        return (), "strategies.yaml"

    def candidates(self, regime: str, stream: str | None = None) -> tuple[Choice, ...]:
        """The regime's choices on `stream`, best first: the ranked ones (a Choice as it is, a name with its
        YAML params if listed there, else its defaults), then the remaining YAML entries in file order."""
        cached = self._candidates.get((regime, stream))
        if cached is not None:
            return cached
        listed = self.config.regimes.get(regime, (self.config.default,))
        ranked: dict[str, Choice] = {}
        for entry in self._ranking(regime, stream)[0]:
            choice = entry if isinstance(entry, Choice) else (
                next((c for c in listed if c.strategy == entry), None)
                or Choice(entry, make_params(STRATEGIES[entry])))
            ranked.setdefault(choice.key, choice)
        found = (*ranked.values(), *(choice for choice in listed if choice.key not in ranked))
        self._candidates[(regime, stream)] = found
        return found

    def choose(self, regime: str, stream: str | None = None) -> Choice:
        """The strategy to run in `regime` on `stream` (None: the rankings for every stream)."""
        return self.candidates(regime, stream)[0]

    def selected_by(self, regime: str, stream: str | None = None) -> SelectedBy:
        """Where `choose(regime, stream)` comes from: stream_rankings, rankings or strategies.yaml."""
        return self._ranking(regime, stream)[1]

    def choices(self, stream: str | None = None) -> tuple[Choice, ...]:
        """Every choice any regime can select on `stream`, each once, in a stable order (for warm-up)."""
        cached = self._choices.get(stream)
        if cached is not None:
            return cached
        every: dict[str, Choice] = {}
        for regime in (*REGIMES, *self.config.regimes):
            for choice in self.candidates(regime, stream):
                every.setdefault(choice.key, choice)
        every.setdefault(self.config.default.key, self.config.default)
        self._choices[stream] = tuple(every.values())
        return self._choices[stream]


def _check_rankings(rankings: Rankings, where: str) -> dict[str, tuple[str | Choice, ...]]:
    """Rankings with known regimes and registered strategies (a Choice's params of its strategy's type);
    regimes ranking nothing are dropped."""
    if not isinstance(rankings, Mapping):
        raise SelectorConfigError(f"{where}: expected a mapping of regime -> strategies, got {rankings!r}")
    checked = {}
    for regime, entries in rankings.items():
        if regime not in REGIMES:
            raise SelectorConfigError(f"{where}: unknown regime {regime!r}; known: {_known(REGIMES)}")
        if isinstance(entries, str) or not isinstance(entries, Sequence):
            raise SelectorConfigError(f"{where}.{regime}: expected a list of strategies, got {entries!r}")
        for entry in entries:
            name = entry.strategy if isinstance(entry, Choice) else entry
            if not isinstance(name, str) or name not in STRATEGIES:
                raise SelectorConfigError(f"{where}.{regime}: unknown strategy {name!r}; "
                                          f"known: {_known(sorted(STRATEGIES))}")
            expected = STRATEGIES[name].Params
            if isinstance(entry, Choice) and not isinstance(entry.params, expected):
                raise SelectorConfigError(f"{where}.{regime}: the params of {name} are "
                                          f"{type(entry.params).__name__}, not {expected.__name__}")
        if entries:
            checked[regime] = tuple(entries)
    return checked


def stream_of(event: StrategyRanked) -> str:
    """The stream a ranking was measured on: `exchange:symbol:timeframe`."""
    return f"{event.exchange}:{event.symbol}:{event.timeframe}"


def ranked_choice(event: StrategyRanked) -> Choice:
    """The strategy and optimised parameters of a ranking, validated (SelectorConfigError names it)."""
    return parse_choice({"strategy": event.strategy, "params": event.params},
                        f"ranking {event.key} (run {event.run_id})")


def rankings_from(
    events: Iterable[StrategyRanked], *, stream: str | None = None, min_bars: int = MIN_BARS,
    min_strategies: int = MIN_STRATEGIES,
) -> dict[str, tuple[Choice, ...]]:
    """Regime -> Choices best first (each with the optimiser's parameters), from per-regime rankings.

    Per key (stream, regime, strategy) the latest ranking counts (newest `at`; equal: the later one).
    Only feasible rankings with a score measured on at least `min_bars` out-of-sample bars count. With
    `stream`, that stream's rankings; with None, each strategy's mean score over the streams it was
    ranked on (its parameters from its newest ranking). A regime ranking fewer than `min_strategies`
    strategies is left out: the YAML order stands there. Ties go to the strategy name. Every event is
    validated, counted or not: SelectorConfigError names the first invalid one.
    """
    current: dict[str, StrategyRanked] = {}
    for event in events:
        ranked_choice(event)
        known = current.get(event.key)
        if known is None or event.at >= known.at:
            current[event.key] = event
    scores: dict[str, dict[str, list[float]]] = {}
    newest: dict[tuple[str, str], StrategyRanked] = {}  # (regime, strategy) -> its newest counted ranking
    for key in sorted(current):
        event = current[key]
        if event.regime is None or not event.feasible or event.score is None or event.bars < min_bars:
            continue
        if stream is not None and stream_of(event) != stream:
            continue
        scores.setdefault(event.regime, {}).setdefault(event.strategy, []).append(event.score)
        known = newest.get((event.regime, event.strategy))
        if known is None or event.at >= known.at:
            newest[(event.regime, event.strategy)] = event
    out: dict[str, tuple[Choice, ...]] = {}
    for regime in REGIMES:
        per_strategy = scores.get(regime, {})
        if len(per_strategy) < min_strategies:
            continue
        mean = {name: sum(values) / len(values) for name, values in per_strategy.items()}
        order = sorted(mean, key=lambda name: (-mean[name], name))
        out[regime] = tuple(ranked_choice(newest[(regime, name)]) for name in order)
    return out


def selector_from(
    config: StrategiesConfig, events: Iterable[StrategyRanked], *, min_bars: int = MIN_BARS
) -> StrategySelector:
    """`config` reordered by the rankings in `events`: per stream, and over every stream for the others."""
    events = list(events)
    by_stream: dict[str, list[StrategyRanked]] = {}
    for event in events:
        by_stream.setdefault(stream_of(event), []).append(event)
    per_stream = {stream: rankings_from(by_stream[stream], stream=stream, min_bars=min_bars)
                  for stream in sorted(by_stream)}
    return StrategySelector(config, rankings_from(events, min_bars=min_bars),
                            {stream: ranked for stream, ranked in per_stream.items() if ranked})


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
