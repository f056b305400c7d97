"""Market regimes per stream: bull, bear, neutral or high_volatility, from independent indicators.

Three parts, each replaceable:

- Features (`FEATURES`): scale-free numbers from trend (EMA 20/50 gap, SMA 50 and SMA 200
  slopes, distance to SMA 200, ADX), momentum (RSI, MACD histogram, 24-candle return) and
  volatility (ATR %, 20-candle volatility, its percentile in the last month, Bollinger width)
  indicators plus the volume z-score. Every feature at candle t uses candles up to t only. One
  definition (`_features`) serves whole columns (`feature_matrix`, training) and one candle's
  floats (`MarketConditionDetector`, live), so the two agree to the bit.
- Detectors: `RuleBasedDetector` (transparent thresholds, the fallback and baseline) and
  `ForestDetector` (a scikit-learn random forest trained on `label_regimes`).
- `Hysteresis`: a proposed regime becomes the regime only after `confirm` consecutive candles
  and never sooner than `min_dwell` candles after the last change, so the regime does not flap.

Labels (`label_regimes`) look forward by design — they are what the forest learns to foresee —
so evaluation is walk-forward and purged: no training row's label horizon reaches into the
test window (`settled` times; the split itself is `agents.technical.model.walk_forward_splits`,
which the training CLI passes in).
"""

from __future__ import annotations

import bisect
import hashlib
import io
import math
import warnings
from collections import Counter, deque
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import joblib
import numpy as np
import pandas as pd
import sklearn
from sklearn.ensemble import RandomForestClassifier
from sklearn.exceptions import InconsistentVersionWarning

from indicators import StreamingIndicatorSet, batch, compute_batch
from indicators.catalog import CandleRow
from indicators.streaming import ZScore
from topics.regime import RegimeChanged

REGIMES = ("bull", "bear", "neutral", "high_volatility")
INDICATORS = (
    "ema_20", "ema_50", "sma_50", "sma_200", "adx_14", "rsi_14", "macd_12_26_9", "atr_14", "bb_20_2",
    "volatility_20",
)
SLOPE_LAG = 24  # candles over which the SMA slopes and the return are measured
VOLUME_Z_PERIOD = 20
VOL_RANK_WINDOW = 720  # a month of hourly candles
VOL_RANK_MIN = 100  # values needed before the volatility percentile is defined
FEATURES = (
    "ema_20_vs_50", "sma_50_slope", "sma_200_slope", "close_vs_sma_200", "adx_14", "rsi_14", "macd_hist_rel",
    "return_24", "atr_rel", "volatility_20", "volatility_rank", "bb_width", "volume_z",
)
ARTIFACT_KIND = "cryptiq.regime.random_forest"
ARTIFACT_FORMAT = 1

Detector = Literal["forest", "rules"]


# ---------------------------------------------------------------- features

def _ratio(a: Any, b: Any) -> Any:
    """a / b, NaN where b is 0 or unknown: for columns (numpy) and plain floats alike."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        out = np.full(np.shape(a if isinstance(a, np.ndarray) else b), np.nan)
        np.divide(a, b, out=out, where=np.asarray(b) != 0)
        return out
    return a / b if b != 0 else math.nan


def _features(c: Mapping[str, Any]) -> tuple[Any, ...]:
    """FEATURES, in order, from columns or floats (NaN while an input warms up)."""
    close = c["close"]
    return (
        _ratio(c["ema_20"] - c["ema_50"], close),
        _ratio(c["sma_50"], c["sma_50_lag"]) - 1.0,
        _ratio(c["sma_200"], c["sma_200_lag"]) - 1.0,
        _ratio(close, c["sma_200"]) - 1.0,
        c["adx_14"],
        c["rsi_14"],
        _ratio(c["macd_hist_12_26_9"], close),
        _ratio(close, c["close_lag"]) - 1.0,
        _ratio(c["atr_14"], close),
        c["volatility_20"],
        c["volatility_rank"],
        _ratio(c["bb_upper_20_2"] - c["bb_lower_20_2"], c["bb_middle_20_2"]),
        c["volume_z"],
    )


class VolatilityRank:
    """Share of the last VOL_RANK_WINDOW volatilities (this one included) at or below the current one.

    A sorted copy of the window makes each update O(log n) to find and O(n) to shift a small list.
    """

    def __init__(self) -> None:
        self.window: deque[float] = deque(maxlen=VOL_RANK_WINDOW)
        self._sorted: list[float] = []

    def update(self, volatility: float) -> float:
        """The rank of `volatility` (NaN input: NaN out, nothing stored)."""
        if math.isnan(volatility):
            return math.nan
        if len(self.window) == self.window.maxlen:
            del self._sorted[bisect.bisect_left(self._sorted, self.window[0])]
        self.window.append(volatility)
        bisect.insort(self._sorted, volatility)
        if len(self._sorted) < VOL_RANK_MIN:
            return math.nan
        return bisect.bisect_right(self._sorted, volatility) / len(self._sorted)

    def to_state(self) -> list[float]:
        return list(self.window)

    @classmethod
    def from_state(cls, state: Sequence[float]) -> VolatilityRank:
        rank = cls()
        rank.window.extend(float(value) for value in state)
        rank._sorted = sorted(rank.window)
        return rank


def _lagged(values: np.ndarray, lag: int) -> np.ndarray:
    out = np.full(len(values), np.nan)
    out[lag:] = values[:-lag]
    return out


def feature_matrix(candles: pd.DataFrame) -> np.ndarray:
    """(rows, len(FEATURES)) float64 for a candle frame (`read_candles` output); NaN during warm-up."""
    indicators = compute_batch(candles, INDICATORS)
    columns: dict[str, Any] = {
        name: indicators[name].to_numpy(dtype=np.float64)
        for name in indicators.columns if name != "open_time"
    }
    close = candles["close"].to_numpy(dtype=np.float64)
    columns["close"] = close
    columns["close_lag"] = _lagged(close, SLOPE_LAG)
    columns["sma_50_lag"] = _lagged(columns["sma_50"], SLOPE_LAG)
    columns["sma_200_lag"] = _lagged(columns["sma_200"], SLOPE_LAG)
    columns["volume_z"] = batch.zscore(candles["volume"].to_numpy(dtype=np.float64), VOLUME_Z_PERIOD)
    rank = VolatilityRank()
    columns["volatility_rank"] = np.array([rank.update(value) for value in columns["volatility_20"].tolist()])
    return np.column_stack([np.asarray(feature, dtype=np.float64) for feature in _features(columns)])


# ---------------------------------------------------------------- labels

@dataclass(frozen=True)
class LabelParams:
    """How the forward-looking training labels are made. Stored with the model."""

    horizon: int = 24  # candles ahead
    threshold: float = 0.02  # |forward return| beyond this is a trend
    vol_quantile: float = 0.9  # forward volatility above this quantile of its past is high_volatility
    vol_window: int = VOL_RANK_WINDOW  # past forward volatilities the quantile is taken over

    def __post_init__(self) -> None:
        if not isinstance(self.horizon, int) or self.horizon < 2:
            raise ValueError(f"horizon must be an integer >= 2, got {self.horizon!r}")
        if not 0 < self.threshold < 1:
            raise ValueError(f"threshold must be in (0, 1), got {self.threshold!r}")
        if not 0 < self.vol_quantile < 1:
            raise ValueError(f"vol_quantile must be in (0, 1), got {self.vol_quantile!r}")
        if not isinstance(self.vol_window, int) or self.vol_window < VOL_RANK_MIN:
            raise ValueError(f"vol_window must be an integer >= {VOL_RANK_MIN}, got {self.vol_window!r}")


def label_regimes(close: np.ndarray, params: LabelParams) -> np.ndarray:
    """The regime each candle's next `horizon` candles turned out to be; "" where not yet known.

    high_volatility if the realised volatility of candles t+1..t+horizon is above the
    `vol_quantile` of the forward volatilities already settled at t (those of candles up to
    t - horizon, the last `vol_window` of them), so the bar is set by the past, not the test
    window; otherwise bull / bear if the close at t+horizon is beyond ±threshold of the close at
    t, else neutral. The label of t uses closes up to t+horizon only.
    """
    close = np.asarray(close, dtype=np.float64)
    h = params.horizon
    n = len(close)
    out = np.full(n, "", dtype=object)
    if n <= h:
        return out
    returns = pd.Series(np.log(close[1:] / close[:-1]))
    # forward_vol[t] = population stdev of log returns t+1..t+h (returns index j is close j -> j+1)
    rolling = returns.rolling(h).std(ddof=0).to_numpy()  # index j: returns j-h+1..j
    forward_vol = np.full(n, np.nan)
    forward_vol[: n - h] = rolling[h - 1:]
    past = pd.Series(forward_vol).shift(h)  # settled at t: forward vols of candles <= t - h
    bar = past.rolling(params.vol_window, min_periods=VOL_RANK_MIN).quantile(params.vol_quantile).to_numpy()
    change = np.full(n, np.nan)
    change[: n - h] = close[h:] / close[: n - h] - 1.0
    known = ~np.isnan(change) & ~np.isnan(bar)
    bear_or_neutral = np.where(change < -params.threshold, "bear", "neutral")
    trend = np.where(change > params.threshold, "bull", bear_or_neutral)
    out[known] = np.where(forward_vol[known] > bar[known], "high_volatility", trend[known])
    return out


@dataclass(frozen=True)
class RegimeDataset:
    """Labelled, finite feature rows of one or more series, in time order."""

    times: np.ndarray  # open_time of the candle a row describes
    settled: np.ndarray  # open_time of the last candle its label used (t + horizon)
    features: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.times)


def build_dataset(series: Sequence[pd.DataFrame], params: LabelParams) -> RegimeDataset:
    """Every series' labelled rows (warm-up and unlabelled tail dropped), merged by time."""
    parts = []
    for candles in series:
        matrix = feature_matrix(candles)
        times = candles["open_time"].to_numpy(dtype=np.int64)
        target = label_regimes(candles["close"].to_numpy(dtype=np.float64), params)
        settled = np.full(len(times), -1, dtype=np.int64)
        settled[: max(0, len(times) - params.horizon)] = times[params.horizon:]
        keep = np.isfinite(matrix).all(axis=1) & (target != "")
        parts.append((times[keep], settled[keep], matrix[keep], target[keep].astype(str)))
    times = np.concatenate([part[0] for part in parts])
    order = np.argsort(times, kind="stable")
    return RegimeDataset(times[order], np.concatenate([p[1] for p in parts])[order],
                         np.concatenate([p[2] for p in parts])[order],
                         np.concatenate([p[3] for p in parts])[order])


# ---------------------------------------------------------------- detectors

@dataclass(frozen=True)
class RuleThresholds:
    """The rule detector's thresholds (hourly candles in mind).

    1. high_volatility: volatility_rank >= `high_vol_rank` (the 20-candle volatility is in the
       top 10 % of the last month).
    2. bull: ADX >= `min_adx` (a trend exists), SMA 50 rose more than `min_slope` over 24
       candles, and close is above SMA 200 (the long trend agrees); bear: the mirror image.
    3. neutral otherwise.
    """

    high_vol_rank: float = 0.9
    min_adx: float = 20.0
    min_slope: float = 0.005


class RuleBasedDetector:
    """Transparent rules over FEATURES: the fallback when no forest is loaded, and its baseline."""

    name: Detector = "rules"

    def __init__(self, thresholds: RuleThresholds | None = None) -> None:
        self.thresholds = thresholds or RuleThresholds()
        self._index = {name: i for i, name in enumerate(FEATURES)}

    def classify(self, row: Sequence[float]) -> tuple[str, list[str]]:
        """The regime of one finite FEATURES row and the rules that decided it."""
        t = self.thresholds
        rank, adx = row[self._index["volatility_rank"]], row[self._index["adx_14"]]
        slope, above = row[self._index["sma_50_slope"]], row[self._index["close_vs_sma_200"]]
        if rank >= t.high_vol_rank:
            return "high_volatility", [f"volatility_rank {rank:.3f} >= {t.high_vol_rank}"]
        if adx < t.min_adx:
            return "neutral", [f"adx_14 {adx:.1f} < {t.min_adx}"]
        if slope > t.min_slope and above > 0:
            return "bull", [f"adx_14 {adx:.1f} >= {t.min_adx}", f"sma_50_slope {slope:.4f} > {t.min_slope}",
                            f"close_vs_sma_200 {above:.4f} > 0"]
        if slope < -t.min_slope and above < 0:
            return "bear", [f"adx_14 {adx:.1f} >= {t.min_adx}", f"sma_50_slope {slope:.4f} < {-t.min_slope}",
                            f"close_vs_sma_200 {above:.4f} < 0"]
        return "neutral", [f"adx_14 {adx:.1f} >= {t.min_adx} but sma_50_slope {slope:.4f} and "
                           f"close_vs_sma_200 {above:.4f} do not agree on a trend"]

    def predict(self, features: np.ndarray) -> np.ndarray:
        return np.array([self.classify(row)[0] for row in features.tolist()], dtype=object).astype(str)


@dataclass(frozen=True)
class ForestParams:
    """How the forest is fitted; `random_state` fixed so one dataset gives one forest."""

    n_estimators: int = 60
    max_depth: int = 8
    min_samples_leaf: int = 100
    max_samples: float = 0.3  # bootstrap share per tree: faster, and decorrelates trees
    random_state: int = 0


class ForestDetector:
    """A fitted random forest over FEATURES: `classify(row)` -> (regime, class probabilities)."""

    name: Detector = "forest"

    def __init__(
        self, forest: RandomForestClassifier, params: dict[str, Any], version: int | None = None
    ) -> None:
        self.forest = forest
        self.params = params
        self.version = version
        self.classes = [str(name) for name in forest.classes_]

    @classmethod
    def fit(
        cls, data: RegimeDataset, params: ForestParams, labels: LabelParams | None = None
    ) -> ForestDetector:
        forest = new_forest(params).fit(data.features, data.labels)
        described = {**asdict(params), **asdict(labels or LabelParams()), "features": list(FEATURES)}
        return cls(forest, described)

    def classify(self, row: Sequence[float]) -> tuple[str, dict[str, float]]:
        probabilities = self.forest.predict_proba(np.asarray([row], dtype=np.float64))[0]
        shares = {name: round(float(p), 6) for name, p in zip(self.classes, probabilities, strict=True)}
        return self.classes[int(np.argmax(probabilities))], shares

    def predict(self, features: np.ndarray) -> np.ndarray:
        return np.asarray(self.forest.predict(features)).astype(str)

    def dump(self) -> bytes:
        """The model file's bytes (joblib): the forest, the features it expects and its parameters."""
        buffer = io.BytesIO()
        joblib.dump({"kind": ARTIFACT_KIND, "format": ARTIFACT_FORMAT, "sklearn": sklearn.__version__,
                     "forest": self.forest, "features": list(FEATURES), "params": self.params}, buffer)
        return buffer.getvalue()

    @classmethod
    def load(cls, data: bytes, sha256: str, version: int | None = None) -> ForestDetector:
        """The forest in `data` after checking its hash; ValueError saying what to do if it is unusable."""
        if hashlib.sha256(data).hexdigest() != sha256:
            raise ValueError("regime model file does not match its registered sha256; retrain with "
                             "`cryptiq train regime`")
        with warnings.catch_warnings():  # another scikit-learn's pickle is refused below, not warned about
            warnings.simplefilter("ignore", InconsistentVersionWarning)
            payload = joblib.load(io.BytesIO(data))
        kind = (payload.get("kind"), payload.get("format")) if isinstance(payload, dict) else None
        if kind != (ARTIFACT_KIND, ARTIFACT_FORMAT):
            raise ValueError(f"not a regime forest of format {ARTIFACT_FORMAT}")
        if payload.get("sklearn") != sklearn.__version__ or payload.get("features") != list(FEATURES):
            raise ValueError("regime model was written by another scikit-learn or for other features; "
                             "retrain with `cryptiq train regime`")
        return cls(payload["forest"], payload["params"], version)


def new_forest(params: ForestParams) -> RandomForestClassifier:
    return RandomForestClassifier(
        n_estimators=params.n_estimators, max_depth=params.max_depth,
        min_samples_leaf=params.min_samples_leaf, max_samples=params.max_samples,
        random_state=params.random_state, n_jobs=1,
    )


# ---------------------------------------------------------------- evaluation

@dataclass(frozen=True)
class Scores:
    """Accuracy overall and recall per true class (share of that class's rows answered right)."""

    accuracy: float
    per_class: dict[str, float]


def score(truth: np.ndarray, predicted: np.ndarray) -> Scores:
    per_class = {name: float((predicted[truth == name] == name).mean()) if (truth == name).any() else math.nan
                 for name in REGIMES}
    return Scores(float((predicted == truth).mean()) if len(truth) else math.nan, per_class)


@dataclass(frozen=True)
class EvaluationReport:
    """Pooled out-of-sample results of every walk-forward window."""

    rows: int
    test_rows: int
    windows: int
    class_counts: dict[str, int]
    forest: Scores
    rules: Scores
    majority: Scores  # always the training window's most common class
    scores_by_window: list[dict[str, float]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def evaluate(data: RegimeDataset, splits: Sequence[Any], params: ForestParams,
             rules: RuleBasedDetector | None = None) -> EvaluationReport:
    """Fit a forest on each split's (purged) training rows; score it, the rules and the majority class
    on the split's test rows. `splits` have `train` and `test` index arrays."""
    rules = rules or RuleBasedDetector()
    truths, forest_out, rule_out, majority_out, by_window = [], [], [], [], []
    for split in splits:
        forest = new_forest(params).fit(data.features[split.train], data.labels[split.train])
        truth = data.labels[split.test]
        predicted = np.asarray(forest.predict(data.features[split.test])).astype(str)
        majority = Counter(data.labels[split.train].tolist()).most_common(1)[0][0]
        ruled = rules.predict(data.features[split.test])
        truths.append(truth)
        forest_out.append(predicted)
        rule_out.append(ruled)
        majority_out.append(np.full(len(truth), majority))
        by_window.append({
            "test_rows": len(truth), "forest": float((predicted == truth).mean()),
            "rules": float((ruled == truth).mean()), "majority": float((truth == majority).mean()),
        })
    truth = np.concatenate(truths) if truths else np.array([], dtype=str)

    def pooled(parts: list[np.ndarray]) -> Scores:
        return score(truth, np.concatenate(parts) if parts else np.array([], dtype=str))

    counts = dict(sorted(Counter(data.labels.tolist()).items()))
    return EvaluationReport(
        len(data), len(truth), len(by_window), counts, pooled(forest_out), pooled(rule_out),
        pooled(majority_out), by_window,
    )


# ---------------------------------------------------------------- hysteresis

@dataclass(frozen=True)
class HysteresisConfig:
    """`confirm`: consecutive candles a new regime must be proposed; `min_dwell`: candles a regime is
    held at least before it may change."""

    confirm: int = 4
    min_dwell: int = 24

    def __post_init__(self) -> None:
        for name in ("confirm", "min_dwell"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"regime {name} must be an integer >= 1, got {value!r}")


@dataclass
class Hysteresis:
    """The confirmed regime of one stream, fed one proposal per candle. Pure state."""

    config: HysteresisConfig = field(default_factory=HysteresisConfig)
    regime: str | None = None
    dwell: int = 0  # proposals since the regime last changed
    candidate: str | None = None
    streak: int = 0  # consecutive proposals of `candidate`

    def step(self, proposal: str) -> bool:
        """Feed one candle's proposal; True if the confirmed regime changed on it."""
        self.dwell += 1
        if proposal == self.regime:
            self.candidate, self.streak = None, 0
            return False
        if proposal == self.candidate:
            self.streak += 1
        else:
            self.candidate, self.streak = proposal, 1
        first = self.regime is None
        if self.streak >= self.config.confirm and (first or self.dwell >= self.config.min_dwell):
            self.regime, self.dwell, self.candidate, self.streak = proposal, 0, None, 0
            return True
        return False

    def to_state(self) -> dict[str, Any]:
        return {
            "regime": self.regime, "dwell": self.dwell, "candidate": self.candidate, "streak": self.streak,
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any], config: HysteresisConfig | None = None) -> Hysteresis:
        return cls(config or HysteresisConfig(), state["regime"], int(state["dwell"]), state["candidate"],
                   int(state["streak"]))


# ---------------------------------------------------------------- the streaming detector

class MarketConditionDetector:
    """One stream's regime, candle by candle in O(1): streaming indicators -> features -> forest (or the
    rules if no forest is loaded) -> hysteresis -> a `RegimeChanged` when the confirmed regime changes."""

    def __init__(self, exchange: str, symbol: str, timeframe: str, *, forest: ForestDetector | None = None,
                 rules: RuleBasedDetector | None = None, hysteresis: HysteresisConfig | None = None) -> None:
        self.exchange, self.symbol, self.timeframe = exchange, symbol, timeframe
        self.forest = forest
        self.rules = rules or RuleBasedDetector()
        self.hysteresis = Hysteresis(hysteresis or HysteresisConfig())
        self.indicators = StreamingIndicatorSet(INDICATORS)
        self.volume_z = ZScore(VOLUME_Z_PERIOD)
        self.rank = VolatilityRank()
        self.history: deque[tuple[float, float, float]] = deque(maxlen=SLOPE_LAG + 1)  # close, sma50, sma200
        self.features: list[float] | None = None  # of the last candle

    def update(self, candle: CandleRow | Any) -> RegimeChanged | None:
        """Feed one closed candle (`CandleClosed` payload or `CandleRow`); the event if the regime changed."""
        values = self.indicators.update(candle)
        volume_z = self.volume_z.update(float(candle.volume))

        def number(value: Any) -> float:
            return math.nan if value is None else float(value)

        columns = {name: number(value) for name, value in values.items()}
        columns["close"] = float(candle.close)
        self.history.append((columns["close"], columns["sma_50"], columns["sma_200"]))
        lagged = self.history[0] if len(self.history) > SLOPE_LAG else (math.nan, math.nan, math.nan)
        columns["close_lag"], columns["sma_50_lag"], columns["sma_200_lag"] = lagged
        columns["volume_z"] = number(volume_z)
        columns["volatility_rank"] = self.rank.update(columns["volatility_20"])
        row = [float(feature) for feature in _features(columns)]
        self.features = row
        if not all(map(math.isfinite, row)):
            return None  # warming up: no proposal
        previous, held = self.hysteresis.regime, self.hysteresis.dwell + 1
        if self.forest is not None:
            proposal, probabilities = self.forest.classify(row)
            evidence: list[str] = []
        else:
            proposal, evidence = self.rules.classify(row)
            probabilities = None
        if not self.hysteresis.step(proposal):
            return None
        detector: Detector = "forest" if self.forest is not None else "rules"
        return RegimeChanged(
            exchange=self.exchange, symbol=self.symbol, timeframe=self.timeframe,
            open_time=int(candle.open_time),
            regime=proposal, previous=previous, detector=detector,  # type: ignore[arg-type]
            model_version=self.forest.version if self.forest is not None else None,
            probabilities=probabilities, evidence=evidence, features=dict(zip(FEATURES, row, strict=True)),
            dwell=held if previous is not None else 0,
        )

    @property
    def regime(self) -> str | None:
        return self.hysteresis.regime

    def to_state(self) -> dict[str, Any]:
        """JSON-serialisable; the forest is not part of it (it is loaded from the registry)."""
        return {"indicators": self.indicators.to_state(), "volume_z": self.volume_z.to_state(),
                "rank": self.rank.to_state(), "history": [list(item) for item in self.history],
                "hysteresis": self.hysteresis.to_state()}

    @classmethod
    def from_state(cls, state: Mapping[str, Any], exchange: str, symbol: str, timeframe: str, *,
                   forest: ForestDetector | None = None, rules: RuleBasedDetector | None = None,
                   hysteresis: HysteresisConfig | None = None) -> MarketConditionDetector:
        detector = cls(exchange, symbol, timeframe, forest=forest, rules=rules, hysteresis=hysteresis)
        detector.indicators = StreamingIndicatorSet.from_state(state["indicators"])
        detector.volume_z = ZScore.from_state(state["volume_z"])
        detector.rank = VolatilityRank.from_state(state["rank"])
        detector.history.extend(  # NaN (warming up) went through JSON as null
            tuple(math.nan if value is None else float(value) for value in item) for item in state["history"]
        )
        detector.hysteresis = Hysteresis.from_state(state["hysteresis"], detector.hysteresis.config)
        return detector

