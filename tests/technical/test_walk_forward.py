"""Labels, purged walk-forward evaluation, the hand-walked tree and the model file, on real candles."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import joblib
import numpy as np
import pytest
from technical_data import candle_frame

from agents.technical.features import FEATURES
from agents.technical.model import (
    Dataset,
    DecisionModel,
    TrainParams,
    build_dataset,
    fit,
    labels,
    load_model,
    new_tree,
    save_model,
    walk_forward,
    walk_forward_splits,
)
from config.errors import ConfigError

HOUR = 3_600_000
PARAMS = TrainParams(horizon=12, fee=0.001, folds=4, max_depth=4, min_samples_leaf=100)


@pytest.fixture(scope="module")
def data() -> Dataset:
    """Two real series pooled: rows of both share timestamps, which the splits must handle."""
    return build_dataset([candle_frame("LINK/USDT"), candle_frame("XRP/USDT")], PARAMS.horizon, PARAMS.fee)


def test_labels_are_the_forward_return_beyond_twice_the_fee() -> None:
    close = np.array([100.0, 100.1, 100.3, 99.0, 99.5, 99.9])
    assert labels(close, 2, 0.001).tolist() == ["buy", "sell", "sell", "buy", "", ""]
    assert labels(close, 1, 0.0005).tolist() == ["hold", "buy", "sell", "buy", "buy", ""]
    assert labels(close[:2], 5, 0.001).tolist() == ["", ""]


def test_rows_are_labelled_from_the_close_horizon_candles_later(data: Dataset) -> None:
    frame = candle_frame("LINK/USDT")
    close = dict(zip(frame["open_time"].tolist(), frame["close"].tolist(), strict=True))
    rows = build_dataset([frame], PARAMS.horizon, PARAMS.fee)
    assert np.isfinite(rows.features).all()
    assert set(rows.labels.tolist()) == {"buy", "hold", "sell"}
    for time, settled, label in zip(rows.times[:500], rows.settled[:500], rows.labels[:500], strict=True):
        assert settled == time + PARAMS.horizon * HOUR  # the bundled series has no gaps here
        change = close[settled] / close[time] - 1
        assert label == ("buy" if change > 0.002 else "sell" if change < -0.002 else "hold")
    assert len(data) > 2 * len(rows) - 100  # both series pooled, warm-up rows dropped


def test_no_training_label_reaches_into_its_test_window(data: Dataset) -> None:
    splits = walk_forward_splits(data, PARAMS.folds)
    assert len(splits) == PARAMS.folds
    previous_end = None
    for split in splits:
        assert data.settled[split.train].max() < split.test_start  # purged: labels settled before
        assert data.times[split.train].max() < split.test_start
        assert data.times[split.test].min() >= split.test_start
        assert data.times[split.test].max() < split.test_end
        assert previous_end is None or split.test_start == previous_end  # windows tile the time line
        previous_end = split.test_end
        # The purge really drops something: rows just before the window whose labels end inside it.
        assert (data.times < split.test_start).sum() > len(split.train)
    covered = np.concatenate([split.test for split in splits])
    assert len(covered) == len(set(covered.tolist()))  # every row is tested at most once


def test_walk_forward_scores_only_out_of_sample_predictions(data: Dataset) -> None:
    report = walk_forward(data, PARAMS)
    splits = walk_forward_splits(data, PARAMS.folds)
    assert [fold.test_rows for fold in report.folds] == [len(split.test) for split in splits]
    right = 0
    for fold, split in zip(report.folds, splits, strict=True):
        tree = new_tree(PARAMS).fit(data.features[split.train], data.labels[split.train])
        hits = int((tree.predict(data.features[split.test]) == data.labels[split.test]).sum())
        assert fold.accuracy == hits / len(split.test)
        majority = max(("buy", "hold", "sell"), key=lambda label: (data.labels[split.train] == label).sum())
        assert fold.majority == majority
        assert fold.baseline == (data.labels[split.test] == majority).mean()
        right += hits
    assert report.accuracy == right / sum(len(split.test) for split in splits)
    assert 0.3 < report.accuracy < 0.7  # markets are hard: honest figures sit near chance


def test_the_hand_walked_tree_answers_like_scikit_learn(data: Dataset) -> None:
    model = fit(data, PARAMS)
    actions = model.tree.predict(data.features)
    shares = model.tree.predict_proba(data.features).max(axis=1)
    walked = [model.predict(row) for row in data.features]
    assert [action for action, _ in walked] == actions.tolist()
    assert np.array_equal([share for _, share in walked], shares)
    assert model.params["features"] == list(FEATURES)
    assert model.params["horizon"] == PARAMS.horizon


def test_the_model_file_round_trips_and_a_changed_file_is_refused(data: Dataset, tmp_path: Path) -> None:
    model = fit(data, PARAMS)
    path, digest = save_model(model, tmp_path / "models")
    assert path.parent == tmp_path / "models"
    assert path.name == f"technical-{digest[:16]}.joblib"
    assert list(path.parent.iterdir()) == [path]  # no temporary file left behind
    loaded = load_model(path, digest, version=3)
    assert isinstance(loaded, DecisionModel)
    assert loaded.version == 3
    rows = data.features[:300]
    assert [loaded.predict(row) for row in rows] == [model.predict(row) for row in rows]

    original = path.read_bytes()
    path.write_bytes(original + b"\0")
    with pytest.raises(ConfigError, match="does not match its registered sha256"):
        load_model(path, digest)
    other = {**joblib.load(io.BytesIO(original)), "sklearn": "0.1"}
    buffer = io.BytesIO()
    joblib.dump(other, buffer)
    path.write_bytes(buffer.getvalue())
    with pytest.raises(ConfigError, match=r"written by scikit-learn 0\.1, this is .*: retrain"):
        load_model(path, hashlib.sha256(buffer.getvalue()).hexdigest())
    with pytest.raises(ConfigError, match="cannot be read"):
        load_model(tmp_path / "missing.joblib", digest)


def test_bad_parameters_and_too_little_data_say_what_to_change() -> None:
    with pytest.raises(ValueError, match="horizon must be an integer >= 1, got 0"):
        TrainParams(horizon=0)
    with pytest.raises(ValueError, match="fee must be a fraction"):
        TrainParams(fee=0.5)
    few = build_dataset([candle_frame("DOGE/USDT").iloc[:300]], 12, 0.001)
    with pytest.raises(ValueError, match=r"only \d+ labelled rows; need at least 400"):
        fit(few, TrainParams(min_samples_leaf=200))
