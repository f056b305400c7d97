"""The buy/sell/hold decision tree: labels, walk-forward evaluation, training, the model file.

Labels look ahead by design — the label of candle t is the close change from t to t + horizon:
`buy` above +2 x fee, `sell` below -2 x fee, else `hold` — so evaluation is walk-forward and
purged: the samples are cut by time into `folds + 1` windows; the model for window k is trained
only on samples whose label was settled (candle t + horizon opened) before window k starts,
and scored on window k. Accuracy is reported against the majority class of the same training
set (what a model that learned nothing would say). The registered model is then fitted on every
labelled sample.

Features are `agents.technical.features` over `indicators.compute_batch` (causal), so the live
agent computes the same numbers from its streaming indicators. `DecisionModel.predict` walks
the fitted tree by hand: the same comparisons as scikit-learn (inputs rounded to float32 as it
does), without its per-call validation, which would cost more than the whole candle.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import sklearn
from sklearn.exceptions import InconsistentVersionWarning
from sklearn.tree import DecisionTreeClassifier

from agents.technical.features import FEATURES, batch_columns, feature_matrix
from config.errors import ConfigError
from indicators import compute_batch

ACTIONS = ("buy", "hold", "sell")
ARTIFACT_FORMAT = 1
ARTIFACT_KIND = "cryptiq.technical.decision_tree"
# The indicators feature_matrix reads (features.INDICATOR_COLUMNS come from these).
BATCH_INDICATORS = (
    "rsi_14", "macd_12_26_9", "ema_20", "ema_50", "sma_50", "bb_20_2", "atr_14", "adx_14", "stoch_5_3_3",
    "volatility_20", "zscore_20", "vwap_20",
)

Progress = Callable[[str], None]


@dataclass(frozen=True)
class TrainParams:
    """How to label and fit. Stored with the model, so a version says how it was made."""

    horizon: int = 24
    fee: float = 0.001
    folds: int = 5
    max_depth: int = 5
    min_samples_leaf: int = 200
    random_state: int = 0

    def __post_init__(self) -> None:
        for name, low in (("horizon", 1), ("folds", 1), ("max_depth", 1), ("min_samples_leaf", 1)):
            value = getattr(self, name)
            if not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        if not 0 <= self.fee < 0.1:
            raise ValueError(f"fee must be a fraction in [0, 0.1), got {self.fee!r}")


def labels(close: np.ndarray, horizon: int, fee: float) -> np.ndarray:
    """buy / sell / hold per candle from the close `horizon` candles later; "" where that is not known."""
    out = np.full(len(close), "", dtype=object)
    if len(close) > horizon:
        change = close[horizon:] / close[:-horizon] - 1.0
        threshold = 2.0 * fee
        sell_or_hold = np.where(change < -threshold, "sell", "hold")
        out[: len(change)] = np.where(change > threshold, "buy", sell_or_hold)
    return out


@dataclass(frozen=True)
class Dataset:
    """Labelled feature rows of one or more candle series, sorted by time."""

    times: np.ndarray  # open_time of the candle the row describes (int64 UTC ms)
    settled: np.ndarray  # open_time of the candle whose close decides its label
    features: np.ndarray  # (rows, len(FEATURES)) float64, all finite
    labels: np.ndarray  # "buy" | "hold" | "sell"

    def __len__(self) -> int:
        return len(self.times)


def series_rows(candles: pd.DataFrame, horizon: int, fee: float) -> Dataset:
    """The labelled rows of one candle series (`read_candles` output: sorted, unique, valid)."""
    indicators = compute_batch(candles, BATCH_INDICATORS)
    matrix = feature_matrix(batch_columns(candles, indicators))
    close = candles["close"].to_numpy(dtype=np.float64)
    times = candles["open_time"].to_numpy(dtype=np.int64)
    target = labels(close, horizon, fee)
    settled = np.full(len(times), -1, dtype=np.int64)
    settled[: max(0, len(times) - horizon)] = times[horizon:]
    keep = np.isfinite(matrix).all(axis=1) & (target != "")
    return Dataset(times[keep], settled[keep], matrix[keep], target[keep].astype(str))


def build_dataset(series: Sequence[pd.DataFrame], horizon: int, fee: float,
                  progress: Progress | None = None) -> Dataset:
    """Every series' rows, merged in time order (ties keep the series order)."""
    parts = []
    for number, candles in enumerate(series, 1):
        parts.append(series_rows(candles, horizon, fee))
        if progress is not None:
            progress(f"features of series {number}/{len(series)}")
    times = np.concatenate([part.times for part in parts])
    order = np.argsort(times, kind="stable")
    return Dataset(
        times[order], np.concatenate([part.settled for part in parts])[order],
        np.concatenate([part.features for part in parts])[order],
        np.concatenate([part.labels for part in parts])[order],
    )


@dataclass(frozen=True)
class Split:
    """One walk-forward step: row indices to train on and to test on."""

    train: np.ndarray
    test: np.ndarray
    test_start: int  # open_time where the test window starts
    test_end: int  # open_time where it ends (exclusive)


def walk_forward_splits(data: Dataset, folds: int) -> list[Split]:
    """`folds` test windows of equal row counts after a first training-only window; purged training sets.

    A row trains a window's model only if its label was settled before the window starts, so
    no training label uses a price from the test window.
    """
    edges = [int(data.times[min(len(data) - 1, len(data) * k // (folds + 1))]) for k in range(folds + 1)]
    edges.append(int(data.times[-1]) + 1)
    splits = []
    for k in range(1, folds + 1):
        start, end = edges[k], edges[k + 1]
        test = np.flatnonzero((data.times >= start) & (data.times < end))
        train = np.flatnonzero(data.settled < start)
        if len(test) and len(train):
            splits.append(Split(train, test, start, end))
    return splits


def new_tree(params: TrainParams) -> DecisionTreeClassifier:
    return DecisionTreeClassifier(
        max_depth=params.max_depth, min_samples_leaf=params.min_samples_leaf,
        random_state=params.random_state,
    )


@dataclass(frozen=True)
class FoldResult:
    """Out-of-sample figures of one walk-forward window."""

    test_start: int
    test_end: int
    train_rows: int
    test_rows: int
    accuracy: float
    baseline: float  # accuracy of always answering the training set's majority class
    majority: str
    best_constant: float  # share of the test window's own most common label (hindsight, for context)


@dataclass(frozen=True)
class Report:
    """Walk-forward results: per window and pooled over every test row."""

    folds: list[FoldResult]
    accuracy: float
    baseline: float
    rows: int
    class_counts: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def walk_forward(data: Dataset, params: TrainParams, progress: Progress | None = None) -> Report:
    """Fit on each purged training set, score on the window after it; out-of-sample only."""
    results = []
    right = right_baseline = tested = 0
    for number, split in enumerate(walk_forward_splits(data, params.folds), 1):
        tree = new_tree(params).fit(data.features[split.train], data.labels[split.train])
        truth = data.labels[split.test]
        hits = int((tree.predict(data.features[split.test]) == truth).sum())
        majority = Counter(data.labels[split.train].tolist()).most_common(1)[0][0]
        base = int((truth == majority).sum())
        best = Counter(truth.tolist()).most_common(1)[0][1]
        results.append(FoldResult(split.test_start, split.test_end, len(split.train), len(split.test),
                                  hits / len(truth), base / len(truth), majority, best / len(truth)))
        right, right_baseline, tested = right + hits, right_baseline + base, tested + len(truth)
        if progress is not None:
            progress(f"walk-forward window {number}")
    counts = dict(sorted(Counter(data.labels.tolist()).items()))
    if not tested:
        return Report(results, float("nan"), float("nan"), len(data), counts)
    return Report(results, right / tested, right_baseline / tested, len(data), counts)


class DecisionModel:
    """A fitted tree as the agent uses it: `predict(features)` -> (action, leaf share of that action)."""

    def __init__(
        self, tree: DecisionTreeClassifier, params: dict[str, Any], version: int | None = None
    ) -> None:
        self.tree = tree
        self.params = params
        self.version = version
        nodes = tree.tree_
        self._left = nodes.children_left.tolist()
        self._right = nodes.children_right.tolist()
        self._feature = nodes.feature.tolist()
        self._threshold = nodes.threshold.tolist()
        values = nodes.value[:, 0, :]
        shares = values / values.sum(axis=1, keepdims=True)
        self._shares = shares.tolist()
        self._best = np.argmax(shares, axis=1).tolist()
        self.classes = [str(name) for name in tree.classes_]

    def predict(self, features: Sequence[float]) -> tuple[str, float]:
        """The action for one finite row of FEATURES, and the share of its leaf's rows that had it."""
        x = np.asarray(features, dtype=np.float64).astype(np.float32).astype(np.float64).tolist()
        node = 0
        left, right, feature, threshold = self._left, self._right, self._feature, self._threshold
        while left[node] != -1:
            node = left[node] if x[feature[node]] <= threshold[node] else right[node]
        best = self._best[node]
        return self.classes[best], float(self._shares[node][best])


def fit(data: Dataset, params: TrainParams) -> DecisionModel:
    """The tree fitted on every labelled row, with the parameters that made it."""
    if len(data) < 2 * params.min_samples_leaf:
        raise ValueError(
            f"only {len(data)} labelled rows; need at least {2 * params.min_samples_leaf} "
            "(more candles, a shorter horizon, or a smaller min_samples_leaf)"
        )
    tree = new_tree(params).fit(data.features, data.labels)
    return DecisionModel(tree, {**asdict(params), "features": list(FEATURES)})


def save_model(model: DecisionModel, folder: Path) -> tuple[Path, str]:
    """Write the model file into `folder` (named by its content hash); (path, sha256)."""
    buffer = io.BytesIO()
    joblib.dump({"format": ARTIFACT_FORMAT, "kind": ARTIFACT_KIND, "sklearn": sklearn.__version__,
                 "tree": model.tree, "features": list(FEATURES), "params": model.params}, buffer)
    data = buffer.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"technical-{digest[:16]}.joblib"
    with tempfile.NamedTemporaryFile(dir=folder, delete=False, suffix=".tmp") as handle:
        handle.write(data)
    os.replace(handle.name, path)  # atomic: a reader never sees half a file
    return path, digest


def load_model(path: Path | str, sha256: str, version: int | None = None) -> DecisionModel:
    """The model in `path`, after checking its hash (a file that changed is never unpickled)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"model file {path} cannot be read ({exc.strerror}): retrain with "
                          "`cryptiq train technical` or restore the file") from exc
    if hashlib.sha256(data).hexdigest() != sha256:
        raise ConfigError(f"model file {path} does not match its registered sha256: it was changed or "
                          "replaced; retrain with `cryptiq train technical`")
    with warnings.catch_warnings():  # a pickle from another scikit-learn is refused below, not warned about
        warnings.simplefilter("ignore", InconsistentVersionWarning)
        payload = joblib.load(io.BytesIO(data))
    kind = (payload.get("kind"), payload.get("format")) if isinstance(payload, dict) else None
    if kind != (ARTIFACT_KIND, ARTIFACT_FORMAT):
        raise ConfigError(f"model file {path} is not a technical decision tree of format {ARTIFACT_FORMAT}")
    if payload.get("sklearn") != sklearn.__version__:
        raise ConfigError(f"model file {path} was written by scikit-learn {payload.get('sklearn')}, this is "
                          f"{sklearn.__version__}: retrain with `cryptiq train technical`")
    if payload["features"] != list(FEATURES):
        raise ConfigError(f"model file {path} was trained on other features than this version computes; "
                          "retrain with `cryptiq train technical`")
    return DecisionModel(payload["tree"], payload["params"], version)
