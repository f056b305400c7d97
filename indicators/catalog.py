"""Indicator sets: every indicator of a candle series, named by its parameters, in batch or streaming form.

An indicator is written the way its column is named: the kind, then its parameters joined by
`_` (`sma_20`, `macd_12_26_9`, `bb_20_2`, `stoch_5_3_3`, `obv`, `cdl_hammer`). Omitted trailing
parameters take their defaults (`rsi` is `rsi_14`). A kind with several outputs gives several
columns: `macd_12_26_9` gives `macd_12_26_9`, `macd_signal_12_26_9` and `macd_hist_12_26_9`;
`bb_20_2` gives `bb_upper_20_2`, `bb_middle_20_2`, `bb_lower_20_2`; `stoch_5_3_3` gives
`stoch_k_5_3_3` and `stoch_d_5_3_3`.

`compute_batch` and `StreamingIndicatorSet` give the same values for the same candles (to the
bit; see `indicators.streaming`): warm-up rows are NaN (missing for the integer
pattern columns) in both.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import numpy as np
import pandas as pd

from indicators import batch, streaming
from indicators.patterns import PATTERN_NAMES, PATTERNS, PatternDetector, detect_patterns

CANDLE_COLUMNS = ("open_time", "open", "high", "low", "close", "volume")
PATTERN_PREFIX = "cdl_"
STATE_VERSION = 1

Value = float | int | None
Arrays = dict[str, np.ndarray]


@dataclass(frozen=True)
class Kind:
    """One indicator kind: its parameters with defaults, its output names, its inputs and both forms.

    The parameter names are the keyword arguments of the batch function and the streaming class.
    """

    params: tuple[tuple[str, int | float], ...]
    outputs: tuple[str, ...]  # column prefixes, one per output
    inputs: str  # what `update` takes: "c" close, "hlc", "cv" close and volume, "hlcv"
    batch: Callable[..., Any]
    streaming: Callable[..., streaming.StreamingIndicator]


KINDS: dict[str, Kind] = {
    "sma": Kind((("period", 20),), ("sma",), "c", batch.sma, streaming.SMA),
    "ema": Kind((("period", 20),), ("ema",), "c", batch.ema, streaming.EMA),
    "wma": Kind((("period", 20),), ("wma",), "c", batch.wma, streaming.WMA),
    "rsi": Kind((("period", 14),), ("rsi",), "c", batch.rsi, streaming.RSI),
    "macd": Kind(
        (("fast", 12), ("slow", 26), ("signal", 9)), ("macd", "macd_signal", "macd_hist"), "c",
        batch.macd, streaming.MACD,
    ),
    "bb": Kind(
        (("period", 20), ("nbdev", 2.0)), ("bb_upper", "bb_middle", "bb_lower"), "c",
        batch.bbands, streaming.BollingerBands,
    ),
    "atr": Kind((("period", 14),), ("atr",), "hlc", batch.atr, streaming.ATR),
    "stoch": Kind(
        (("fastk", 5), ("slowk", 3), ("slowd", 3)), ("stoch_k", "stoch_d"), "hlc",
        batch.stoch, streaming.Stochastic,
    ),
    "adx": Kind((("period", 14),), ("adx",), "hlc", batch.adx, streaming.ADX),
    "obv": Kind((), ("obv",), "cv", batch.obv, streaming.OBV),
    "vwap": Kind((("period", 20),), ("vwap",), "hlcv", batch.vwap, streaming.VWAP),
    "volatility": Kind((("period", 20),), ("volatility",), "c", batch.volatility, streaming.Volatility),
    "zscore": Kind((("period", 20),), ("zscore",), "c", batch.zscore, streaming.ZScore),
}
_INPUT_COLUMNS = {"c": ("close",), "hlc": ("high", "low", "close"), "cv": ("close", "volume"),
                  "hlcv": ("high", "low", "close", "volume")}


class Candle(Protocol):
    """What `StreamingIndicatorSet.update` reads: a `topics.market.CandleClosed` payload fits."""

    @property
    def open_time(self) -> int: ...
    @property
    def open(self) -> float: ...
    @property
    def high(self) -> float: ...
    @property
    def low(self) -> float: ...
    @property
    def close(self) -> float: ...
    @property
    def volume(self) -> float: ...


class CandleRow(NamedTuple):
    """A plain candle, for callers that hold the values rather than an event."""

    open_time: int
    open: float
    high: float
    low: float
    close: float
    volume: float


DEFAULT_INDICATORS: tuple[str, ...] = (
    "sma_20", "sma_50", "ema_20", "ema_50", "wma_20", "rsi_14", "atr_14", "macd_12_26_9", "bb_20_2",
    "stoch_5_3_3", "adx_14", "obv", "vwap_20", "volatility_20", "zscore_20",
    *(PATTERN_PREFIX + name for name in PATTERN_NAMES),
)


@dataclass(frozen=True)
class IndicatorSpec:
    """One indicator with its parameters; `name` is its canonical spelling (`bb_20_2`)."""

    kind: str
    params: tuple[int | float, ...] = ()

    @property
    def is_pattern(self) -> bool:
        return self.kind.startswith(PATTERN_PREFIX)

    @property
    def name(self) -> str:
        return "_".join([self.kind, *(_format(value) for value in self.params)])

    @property
    def keywords(self) -> dict[str, int | float]:
        """The parameters by name, as the batch function and the streaming class take them."""
        return {name: value for (name, _), value in zip(KINDS[self.kind].params, self.params, strict=True)}

    @property
    def columns(self) -> tuple[str, ...]:
        if self.is_pattern:
            return (self.kind,)
        suffix = "".join("_" + _format(value) for value in self.params)
        return tuple(prefix + suffix for prefix in KINDS[self.kind].outputs)


def _format(value: int | float) -> str:
    return str(value) if isinstance(value, int) else f"{value:g}"


def parse_indicator(text: str) -> IndicatorSpec:
    """`"ema_20"` -> IndicatorSpec("ema", (20,)); a ValueError says what is wrong and what is known."""
    text = text.strip().lower()
    if text.startswith(PATTERN_PREFIX):
        if text[len(PATTERN_PREFIX):] not in PATTERNS:
            known = ", ".join(PATTERN_PREFIX + name for name in PATTERN_NAMES)
            raise ValueError(f"unknown candlestick pattern {text!r}; known: {known}")
        return IndicatorSpec(text)
    kind, *raw = text.split("_")
    if kind not in KINDS:
        raise ValueError(f"unknown indicator {text!r}; known kinds: {', '.join(KINDS)}, cdl_<pattern>")
    declared = KINDS[kind].params
    if len(raw) > len(declared):
        expected = "_".join([kind, *(name for name, _ in declared)]) if declared else kind
        raise ValueError(f"indicator {text!r} has too many parameters; write it as {expected}")
    params: list[int | float] = []
    for position, (param, default) in enumerate(declared):
        if position >= len(raw):
            params.append(default)
            continue
        try:
            value: int | float = int(raw[position]) if isinstance(default, int) else float(raw[position])
        except ValueError:
            kind_of = "an integer" if isinstance(default, int) else "a number"
            message = f"indicator {text!r}: {param} must be {kind_of}, got {raw[position]!r}"
            raise ValueError(message) from None
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"indicator {text!r}: {param} must be finite, got {raw[position]!r}")
        params.append(value)
    spec = IndicatorSpec(kind, tuple(params))
    KINDS[kind].streaming(**spec.keywords)  # validates the parameters (ValueError naming the bad one)
    return spec


def parse_indicators(texts: Iterable[str]) -> tuple[IndicatorSpec, ...]:
    """Parsed and de-duplicated specs, in the order given; an empty list is an error."""
    specs: dict[str, IndicatorSpec] = {}
    for text in texts:
        spec = parse_indicator(text)
        specs.setdefault(spec.name, spec)
    if not specs:
        raise ValueError("no indicator given")
    return tuple(specs.values())


def columns_of(specs: Sequence[IndicatorSpec]) -> tuple[str, ...]:
    return tuple(column for spec in specs for column in spec.columns)


def _candle_arrays(candles: pd.DataFrame) -> Arrays:
    missing = [column for column in CANDLE_COLUMNS if column not in candles.columns]
    if missing:
        raise ValueError(f"candles have no {', '.join(missing)} column(s); need {', '.join(CANDLE_COLUMNS)}")
    return {column: candles[column].to_numpy(dtype=np.float64) for column in CANDLE_COLUMNS[1:]}


def compute_batch(candles: pd.DataFrame, indicators: Iterable[str] = DEFAULT_INDICATORS) -> pd.DataFrame:
    """Every indicator over the whole frame (TA-Lib and numpy): `open_time` plus one column per output."""
    specs = parse_indicators(indicators)
    arrays = _candle_arrays(candles)
    columns: dict[str, Any] = {"open_time": candles["open_time"].to_numpy(dtype=np.int64)}
    patterns = [spec.kind[len(PATTERN_PREFIX):] for spec in specs if spec.is_pattern]
    found = (
        detect_patterns(arrays["open"], arrays["high"], arrays["low"], arrays["close"], names=patterns)
        if patterns else {}
    )
    for spec in specs:
        if spec.is_pattern:
            values = found[spec.kind[len(PATTERN_PREFIX):]]
            columns[spec.kind] = pd.arrays.IntegerArray(values.data, values.mask)
            continue
        kind = KINDS[spec.kind]
        outputs = kind.batch(*(arrays[name] for name in _INPUT_COLUMNS[kind.inputs]), **spec.keywords)
        if len(spec.columns) == 1:
            outputs = (outputs,)
        for column, values in zip(spec.columns, outputs, strict=True):
            columns[column] = values
    return pd.DataFrame(columns, index=candles.index, copy=False)  # the arrays are ours: no copies


class StreamingIndicatorSet:
    """The streaming form of `compute_batch`: one closed candle in, every named value out.

    `update(...)` returns `{column: value}` with None until that indicator is warmed up;
    candles must arrive in `open_time` order, each once. `to_state()` is a JSON-serialisable
    snapshot and `from_state()` continues from it exactly, so an agent can keep one set per
    `exchange:symbol:timeframe` and survive restarts.
    """

    __slots__ = (
        "_feeds", "_indicators", "_last_open_time", "_pattern_columns", "_patterns", "columns", "specs",
    )

    def __init__(self, indicators: Iterable[str] = DEFAULT_INDICATORS) -> None:
        self.specs = parse_indicators(indicators)
        self.columns = columns_of(self.specs)
        self._last_open_time: int | None = None
        self._indicators: dict[str, streaming.StreamingIndicator] = {
            spec.name: KINDS[spec.kind].streaming(**spec.keywords)
            for spec in self.specs if not spec.is_pattern
        }
        self._feeds = self._wire()
        patterns = [spec.kind[len(PATTERN_PREFIX):] for spec in self.specs if spec.is_pattern]
        self._patterns = PatternDetector(patterns) if patterns else None
        self._pattern_columns = [(name, PATTERN_PREFIX + name) for name in patterns]

    def _wire(self) -> list[tuple[Callable[..., Any], str, tuple[str, ...]]]:
        """(update, inputs, columns) per indicator: the per-candle loop without lookups."""
        return [
            (self._indicators[spec.name].update, KINDS[spec.kind].inputs, spec.columns)  # type: ignore[attr-defined]
            for spec in self.specs if not spec.is_pattern
        ]

    def update(self, candle: Candle) -> dict[str, Value]:
        """Feed one closed candle; the value of every column after it."""
        open_time = candle.open_time
        if self._last_open_time is not None and open_time <= self._last_open_time:
            raise ValueError(
                f"candle open_time {open_time} is not after the previous one ({self._last_open_time}): "
                "feed each candle once, in time order"
            )
        o, h, lo, c = float(candle.open), float(candle.high), float(candle.low), float(candle.close)
        v = float(candle.volume)
        if not all(map(math.isfinite, (o, h, lo, c, v))):
            raise ValueError(f"candle at {open_time} has a value that is not finite: {o, h, lo, c, v}")
        self._last_open_time = int(open_time)
        arguments = {"c": (c,), "hlc": (h, lo, c), "cv": (c, v), "hlcv": (h, lo, c, v)}
        out: dict[str, Value] = {}
        for update, inputs, columns in self._feeds:
            value = update(*arguments[inputs])
            if len(columns) == 1:
                out[columns[0]] = value
            elif value is None:
                for column in columns:
                    out[column] = None
            else:
                for column, item in zip(columns, value, strict=True):
                    out[column] = item
        if self._patterns is not None:
            found = self._patterns.update(o, h, lo, c)
            for name, column in self._pattern_columns:
                out[column] = found[name]
        return out

    def to_state(self) -> dict[str, Any]:
        """A JSON-serialisable snapshot: the indicator names, the last candle time and every state."""
        return {
            "version": STATE_VERSION,
            "indicators": [spec.name for spec in self.specs],
            "last_open_time": self._last_open_time,
            "states": {name: indicator.to_state() for name, indicator in self._indicators.items()},
            "patterns": None if self._patterns is None else self._patterns.to_state(),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> StreamingIndicatorSet:
        """The set a `to_state()` snapshot describes; a snapshot from another version is a ValueError."""
        if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
            found = state.get("version") if isinstance(state, dict) else type(state).__name__
            raise ValueError(f"indicator-set state has version {found!r}; this code reads {STATE_VERSION}")
        try:
            restored = cls(state["indicators"])
            restored._last_open_time = state["last_open_time"]
            restored._indicators = {
                name: type(indicator).from_state(state["states"][name])
                for name, indicator in restored._indicators.items()
            }
            restored._feeds = restored._wire()
            if restored._patterns is not None:
                restored._patterns = PatternDetector.from_state(state["patterns"])
        except (KeyError, TypeError) as exc:
            raise ValueError(f"indicator-set state is incomplete or malformed: {exc}") from exc
        return restored


def compute_streaming(
    candles: pd.DataFrame,
    indicators: Iterable[str] = DEFAULT_INDICATORS,
    on_candle: Callable[[int], None] | None = None,
) -> pd.DataFrame:
    """`compute_batch`'s frame, computed candle by candle with a `StreamingIndicatorSet`.

    `on_candle(n)` is called every 1,000 candles and at the end with the count done, e.g. to
    drive a progress bar.
    """
    indicator_set = StreamingIndicatorSet(indicators)
    arrays = _candle_arrays(candles)
    times = candles["open_time"].to_numpy(dtype=np.int64)
    count = len(times)
    values: dict[str, list[Value]] = {column: [None] * count for column in indicator_set.columns}
    rows = zip(
        times.tolist(), arrays["open"].tolist(), arrays["high"].tolist(), arrays["low"].tolist(),
        arrays["close"].tolist(), arrays["volume"].tolist(), strict=True,
    )
    for index, row in enumerate(map(CandleRow._make, rows)):
        for column, value in indicator_set.update(row).items():
            values[column][index] = value
        if on_candle is not None and (index + 1) % 1000 == 0:
            on_candle(index + 1)
    if on_candle is not None:
        on_candle(count)
    columns: dict[str, Any] = {"open_time": times}
    for spec in indicator_set.specs:
        for column in spec.columns:
            if spec.is_pattern:
                columns[column] = pd.array(values[column], dtype="Int32")
            else:
                numbers = [np.nan if value is None else value for value in values[column]]
                columns[column] = np.array(numbers, dtype=np.float64)
    return pd.DataFrame(columns, index=candles.index)
