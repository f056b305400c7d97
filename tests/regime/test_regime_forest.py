"""The forest: purged walk-forward, determinism, the model file, and the streaming detector using it."""

from __future__ import annotations

import hashlib
import itertools
import json

import numpy as np
import orjson
import pandas as pd
import pytest
from regime_data import rows, run

from agents.technical.model import Dataset, Split, walk_forward_splits
from orchestrator.regime import (
    REGIMES,
    ForestDetector,
    ForestParams,
    LabelParams,
    MarketConditionDetector,
    RegimeDataset,
    build_dataset,
    evaluate,
)

SMALL = ForestParams(n_estimators=10, max_depth=5, min_samples_leaf=50, random_state=7)
LABELS = LabelParams(horizon=12)


@pytest.fixture(scope="module")
def data(bundled: dict[str, pd.DataFrame]) -> RegimeDataset:
    return build_dataset([bundled["SOL/USDT"], bundled["ADA/USDT"], bundled["XRP/USDT"]], LABELS)


@pytest.fixture(scope="module")
def forest(data: RegimeDataset) -> ForestDetector:
    return ForestDetector.fit(data, SMALL, LABELS)


def splits_of(data: RegimeDataset, folds: int = 4) -> list[Split]:
    return walk_forward_splits(Dataset(data.times, data.settled, data.features, data.labels), folds)


def test_no_training_label_reaches_into_its_test_window(data: RegimeDataset) -> None:
    splits = splits_of(data)
    assert len(splits) == 4
    for split in splits:
        assert data.settled[split.train].max() < split.test_start
        assert data.times[split.test].min() >= split.test_start
        # purging removed the rows just before the window whose horizon reaches into it
        purged = (data.times < split.test_start) & (data.settled >= split.test_start)
        assert purged.any()
        assert not np.isin(np.flatnonzero(purged), split.train).any()
    assert (data.settled - data.times == LABELS.horizon * 3_600_000).mean() > 0.99  # gaps make a few longer


def test_the_same_seed_gives_the_same_forest_and_another_seed_another(data: RegimeDataset) -> None:
    sample = data.features[::50]
    first = ForestDetector.fit(data, SMALL, LABELS).forest.predict_proba(sample)
    again = ForestDetector.fit(data, SMALL, LABELS).forest.predict_proba(sample)
    other = ForestDetector.fit(data, ForestParams(**{**SMALL.__dict__, "random_state": 8}), LABELS)
    assert first.tobytes() == again.tobytes()
    assert first.tobytes() != other.forest.predict_proba(sample).tobytes()


def test_evaluation_scores_every_test_row_once_per_detector(data: RegimeDataset) -> None:
    splits = splits_of(data, folds=3)
    report = evaluate(data, splits, SMALL)
    assert report.test_rows == sum(len(split.test) for split in splits) == sum(
        window["test_rows"] for window in report.scores_by_window
    )
    for scores in (report.forest, report.rules, report.majority):
        assert 0 < scores.accuracy < 1
        assert set(scores.per_class) == set(REGIMES)
    assert sorted(report.majority.per_class.values())[-1] > 0  # the majority answers one class only
    assert json.loads(json.dumps(report.to_dict()))["windows"] == 3


def test_the_model_file_loads_back_and_refuses_a_changed_file(
    forest: ForestDetector, data: RegimeDataset,
) -> None:
    payload = forest.dump()
    loaded = ForestDetector.load(payload, hashlib.sha256(payload).hexdigest(), version=3)
    assert loaded.version == 3
    assert loaded.params["horizon"] == LABELS.horizon
    assert np.array_equal(loaded.predict(data.features[:500]), forest.predict(data.features[:500]))
    with pytest.raises(ValueError, match="does not match its registered sha256"):
        ForestDetector.load(payload + b"x", hashlib.sha256(payload).hexdigest())


def test_the_detector_uses_the_forest_when_loaded_and_continues_exactly_from_saved_state(
    forest: ForestDetector, bundled: dict[str, pd.DataFrame],
) -> None:
    candles = rows(bundled["BTC/USDT"].iloc[:3000])  # a symbol the forest was not trained on
    whole = run(MarketConditionDetector("binance", "BTC/USDT", "1h", forest=forest), candles)
    assert whole
    assert all(event.detector == "forest" and event.evidence == [] for event in whole)
    for event in whole:
        assert event.probabilities is not None
        assert abs(sum(event.probabilities.values()) - 1) < 1e-5
        assert max(event.probabilities, key=event.probabilities.__getitem__) == event.regime
    first = MarketConditionDetector("binance", "BTC/USDT", "1h", forest=forest)
    head = run(first, candles[:1700])
    state = json.loads(json.dumps(first.to_state()))
    second = MarketConditionDetector.from_state(state, "binance", "BTC/USDT", "1h", forest=forest)
    assert [e.model_dump_json() for e in head + run(second, candles[1700:])] == [
        e.model_dump_json() for e in whole
    ]


def test_a_restore_through_orjson_continues_exactly_even_during_warm_up(
    bundled: dict[str, pd.DataFrame],
) -> None:
    """Redis holds the state as orjson, which writes the NaN of warming-up features as null."""
    candles = rows(bundled["SOL/USDT"].iloc[:900])
    reference = MarketConditionDetector("binance", "SOL/USDT", "1h")
    whole = run(reference, candles)
    assert whole
    for cut in (5, 30, 120, 230, 600):
        first = MarketConditionDetector("binance", "SOL/USDT", "1h")
        head = run(first, candles[:cut])
        state = orjson.loads(orjson.dumps(first.to_state()))
        second = MarketConditionDetector.from_state(state, "binance", "SOL/USDT", "1h")
        assert [e.model_dump_json() for e in head + run(second, candles[cut:])] == [
            e.model_dump_json() for e in whole
        ], cut
        assert second.features == reference.features, cut


def test_regime_changes_are_at_least_the_dwell_apart(bundled: dict[str, pd.DataFrame]) -> None:
    detector = MarketConditionDetector("binance", "ETH/USDT", "1h")
    events = run(detector, rows(bundled["ETH/USDT"]))
    gaps = np.diff([event.open_time for event in events]) // 3_600_000
    assert len(events) > 3
    assert gaps.min() >= detector.hysteresis.config.min_dwell
    assert all(a.regime == b.previous for a, b in itertools.pairwise(events))
    assert all(event.dwell >= detector.hysteresis.config.min_dwell for event in events[1:])
