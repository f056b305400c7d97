"""Labels look forward (only the labels); features and regimes are causal; streaming equals batch."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pandas as pd
import pytest
from regime_data import rows, run, utc_ms

from orchestrator.regime import (
    FEATURES,
    LabelParams,
    MarketConditionDetector,
    RuleBasedDetector,
    feature_matrix,
    label_regimes,
)


def perturbed_after(frame: pd.DataFrame, t: int, seed: int) -> pd.DataFrame:
    """The same candles up to index t; every later candle scaled by a random factor."""
    changed = frame.copy()
    factor = np.random.default_rng(seed).uniform(0.5, 1.5, len(frame) - t - 1)
    for column in ("open", "high", "low", "close"):
        values = changed[column].to_numpy(copy=True)
        values[t + 1:] *= factor
        changed[column] = values
    changed["volume"] = changed["volume"].to_numpy() * np.r_[np.ones(t + 1), factor]
    return changed


def test_a_label_uses_the_closes_up_to_t_plus_horizon_and_no_further(btc_hourly: pd.DataFrame) -> None:
    params = LabelParams(horizon=24)
    close = btc_hourly["close"].to_numpy()[:4000]
    labels = label_regimes(close, params)
    assert set(labels[900:3976]) <= {"bull", "bear", "neutral", "high_volatility"}
    assert (labels[-24:] == "").all()  # the last horizon candles have no future yet
    t = 2500 + int(np.flatnonzero(np.isin(labels[2500:], ["bull", "neutral"]))[0])
    later = close.copy()
    later[t + 25:] *= 3.0  # beyond t + horizon: label of t is unchanged
    assert np.array_equal(label_regimes(later, params)[: t + 1], labels[: t + 1])
    crash = close.copy()
    crash[t + 24] = close[t] * 0.5  # within the horizon: the label of t sees it (labels look ahead)
    assert label_regimes(crash, params)[t] in {"bear", "high_volatility"}  # it was bull or neutral


@pytest.mark.parametrize("t", [700, 1234, 2999])
def test_features_and_regimes_at_or_before_t_ignore_every_later_candle(
    btc_hourly: pd.DataFrame, t: int,
) -> None:
    frame = btc_hourly.iloc[20_000:23_000].reset_index(drop=True)
    changed = perturbed_after(frame, t, seed=t)
    original, other = feature_matrix(frame), feature_matrix(changed)
    assert original[: t + 1].tobytes() == other[: t + 1].tobytes()
    if t + 1 < len(frame):
        assert original[t + 1:].tobytes() != other[t + 1:].tobytes()  # the perturbation is real
    first = run(MarketConditionDetector("binance", "BTC/USDT", "1h"), rows(frame))
    second = run(MarketConditionDetector("binance", "BTC/USDT", "1h"), rows(changed))
    cutoff = int(frame["open_time"].iloc[t])
    assert [e.model_dump_json() for e in first if e.open_time <= cutoff] == [
        e.model_dump_json() for e in second if e.open_time <= cutoff
    ]


def test_streaming_features_equal_the_batch_features_to_the_bit(bundled: dict[str, pd.DataFrame]) -> None:
    frame = bundled["ETH/USDT"].iloc[:2000]
    detector = MarketConditionDetector("binance", "ETH/USDT", "1h")
    live = []
    for candle in rows(frame):
        detector.update(candle)
        assert detector.features is not None
        live.append(detector.features)
    batch = feature_matrix(frame)
    assert np.array_equal(np.array(live), batch, equal_nan=True)
    assert np.isfinite(batch[300:]).all()  # SMA 200 + 24-candle slope + the rank's 100 values, then finite
    assert batch.shape[1] == len(FEATURES)


def test_rules_call_a_real_strong_uptrend_bull_far_more_than_bear_and_a_crash_the_reverse(
    btc_hourly: pd.DataFrame,
) -> None:
    features = feature_matrix(btc_hourly)
    times = btc_hourly["open_time"].to_numpy()
    rules = RuleBasedDetector()

    def counts(start: str, end: str) -> Counter[str]:
        chosen = (times >= utc_ms(start)) & (times < utc_ms(end))
        return Counter(rules.predict(features[chosen]).tolist())

    rally = counts("2020-10-01", "2021-02-01")  # BTC 10.8k -> 33k
    assert rally["bull"] > 2 * rally["bear"]
    assert rally["bull"] > 0.2 * sum(rally.values())
    crash = counts("2022-05-01", "2022-07-01")  # LUNA and 3AC: BTC 38k -> 19k
    assert crash["bear"] > 1.5 * crash["bull"]


def test_rule_evidence_names_the_thresholds_that_decided(bundled: dict[str, pd.DataFrame]) -> None:
    events = run(MarketConditionDetector("binance", "BTC/USDT", "1h"), rows(bundled["BTC/USDT"]))
    assert events, "6,803 real candles should confirm at least one regime"
    assert events[0].previous is None
    for event in events:
        assert event.detector == "rules"
        assert event.probabilities is None
        assert event.evidence
        assert all(any(name in line for name in FEATURES) for line in event.evidence)
        assert set(event.features) == set(FEATURES)
        json.loads(event.model_dump_json())
