"""Snapshot and restore: a set restored from JSON mid-stream continues exactly as one never stopped."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from indicator_data import DATASETS, load

from indicators import streaming
from indicators.catalog import DEFAULT_INDICATORS, CandleRow, StreamingIndicatorSet
from indicators.patterns import PatternDetector

EXTRA = ("wma_2", "zscore_2", "volatility_3", "bb_3_1.5", "macd_3_5_1", "stoch_3_1_1")


def _rows(dataset: int, count: int) -> list[CandleRow]:
    frame = load(*DATASETS[dataset][1:]).iloc[:count]
    return [CandleRow(*row) for row in frame.itertuples(index=False)]


def _same(left: dict[str, Any], right: dict[str, Any]) -> bool:
    """Equal dicts, where a NaN (an empty VWAP window) equals a NaN."""
    def norm(value: Any) -> Any:
        return "nan" if isinstance(value, float) and math.isnan(value) else value
    return {k: norm(v) for k, v in left.items()} == {k: norm(v) for k, v in right.items()}


def _through_json(state: dict[str, Any]) -> dict[str, Any]:
    # Strict JSON (no NaN), as Redis, Postgres JSONB and other languages need it.
    return json.loads(json.dumps(state, allow_nan=False))


@settings(max_examples=20, deadline=None)
@given(split=st.integers(0, 400), dataset=st.sampled_from([0, 4, 5]))
def test_restored_set_continues_exactly(split: int, dataset: int) -> None:
    rows = _rows(dataset, 400)
    names = (*DEFAULT_INDICATORS, *EXTRA)
    reference = StreamingIndicatorSet(names)
    expected = [reference.update(row) for row in rows]

    first = StreamingIndicatorSet(names)
    got = [first.update(row) for row in rows[:split]]
    second = StreamingIndicatorSet.from_state(_through_json(first.to_state()))
    got += [second.update(row) for row in rows[split:]]
    assert len(got) == len(expected)
    assert all(_same(a, b) for a, b in zip(got, expected, strict=True))
    assert _through_json(second.to_state()) == _through_json(reference.to_state())


def test_state_stays_the_same_size_however_long_the_stream() -> None:
    rows = _rows(0, 3000)
    indicator_set = StreamingIndicatorSet()
    sizes = {}
    for index, row in enumerate(rows, start=1):
        indicator_set.update(row)
        if index in (300, 3000):
            sizes[index] = len(json.dumps(indicator_set.to_state()))
    assert sizes[3000] < sizes[300] * 1.1, sizes
    assert sizes[3000] < 16_000, sizes


FEEDS = {
    "SMA": (streaming.SMA(5), lambda i, r: i.update(r.close)),
    "EMA": (streaming.EMA(5), lambda i, r: i.update(r.close)),
    "WMA": (streaming.WMA(3), lambda i, r: i.update(r.close)),
    "RSI": (streaming.RSI(3), lambda i, r: i.update(r.close)),
    "MACD": (streaming.MACD(3, 6, 2), lambda i, r: i.update(r.close)),
    "BollingerBands": (streaming.BollingerBands(4, 1.5), lambda i, r: i.update(r.close)),
    "ATR": (streaming.ATR(3), lambda i, r: i.update(r.high, r.low, r.close)),
    "Stochastic": (streaming.Stochastic(3, 2, 2), lambda i, r: i.update(r.high, r.low, r.close)),
    "ADX": (streaming.ADX(3), lambda i, r: i.update(r.high, r.low, r.close)),
    "OBV": (streaming.OBV(), lambda i, r: i.update(r.close, r.volume)),
    "VWAP": (streaming.VWAP(3), lambda i, r: i.update(r.high, r.low, r.close, r.volume)),
    "Volatility": (streaming.Volatility(3, 365), lambda i, r: i.update(r.close)),
    "ZScore": (streaming.ZScore(3), lambda i, r: i.update(r.close)),
    "PatternDetector": (PatternDetector(), lambda i, r: i.update(r.open, r.high, r.low, r.close)),
}


@pytest.mark.parametrize("kind", FEEDS)
def test_every_indicator_restores_at_every_point_of_its_stream(kind: str) -> None:
    """Each split point once: during warm-up, at it, after it, and past a rebuild of the running sums."""
    template, feed = FEEDS[kind]
    cls, params = type(template), template.to_state()["params"]
    rows = _rows(4, 120)
    reference = cls(**params)
    expected = [repr(feed(reference, row)) for row in rows]
    for split in range(len(rows) + 1):
        live = cls(**params)
        for row in rows[:split]:
            feed(live, row)
        restored = cls.from_state(_through_json(live.to_state()))
        assert [repr(feed(restored, row)) for row in rows[split:]] == expected[split:], split


def test_a_snapshot_of_another_kind_or_version_is_refused() -> None:
    sma = streaming.SMA(5).to_state()
    with pytest.raises(ValueError, match="not a EMA snapshot"):
        streaming.EMA.from_state(sma)
    with pytest.raises(ValueError, match="incomplete or malformed"):
        streaming.SMA.from_state({"type": "SMA", "params": {"period": 5}})
    state = StreamingIndicatorSet(["rsi_14"]).to_state()
    with pytest.raises(ValueError, match="version 99"):
        StreamingIndicatorSet.from_state({**state, "version": 99})
    with pytest.raises(ValueError, match="incomplete or malformed"):
        StreamingIndicatorSet.from_state({**state, "states": {}})


def test_candles_out_of_order_twice_or_not_finite_are_refused() -> None:
    indicator_set = StreamingIndicatorSet(["sma_3"])
    indicator_set.update(CandleRow(2_000, 1.0, 2.0, 0.5, 1.5, 10.0))
    with pytest.raises(ValueError, match="is not after the previous one"):
        indicator_set.update(CandleRow(2_000, 1.0, 2.0, 0.5, 1.5, 10.0))
    with pytest.raises(ValueError, match="is not after the previous one"):
        indicator_set.update(CandleRow(1_000, 1.0, 2.0, 0.5, 1.5, 10.0))
    with pytest.raises(ValueError, match="not finite"):
        indicator_set.update(CandleRow(3_000, 1.0, 2.0, 0.5, math.nan, 10.0))
    assert indicator_set.update(CandleRow(3_000, 1.0, 2.0, 0.5, 1.5, 10.0)) == {"sma_3": None}
