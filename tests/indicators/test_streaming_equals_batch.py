"""The incremental indicators equal the TA-Lib batch values on the same prefix, candle by candle.

The contract is 1e-9 relative after warm-up, with warm-up rows missing in both forms; what the
code achieves (and the second test pins, so a TA-Lib upgrade that changes its arithmetic is
noticed) is equality to the last bit.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import talib
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from indicator_data import DATASETS, load
from talib import abstract

from indicators import batch
from indicators.catalog import DEFAULT_INDICATORS, compute_batch, compute_streaming, parse_indicators
from indicators.patterns import PATTERNS

REQUIRED_COLUMNS = (
    "sma_20", "sma_50", "ema_20", "ema_50", "wma_20", "rsi_14", "atr_14", "macd_12_26_9",
    "macd_signal_12_26_9", "macd_hist_12_26_9", "bb_upper_20_2", "bb_middle_20_2", "bb_lower_20_2",
    "stoch_k_5_3_3", "stoch_d_5_3_3", "adx_14", "obv", "vwap_20", "volatility_20", "zscore_20",
    "cdl_hammer", "cdl_inverted_hammer", "cdl_shooting_star", "cdl_doji", "cdl_engulfing",
    "cdl_morning_star", "cdl_evening_star", "cdl_three_white_soldiers", "cdl_three_black_crows",
)
# TA-Lib's lookback of each default column: the first candle that has a value.
WARM_UP = {
    "sma_20": 19, "sma_50": 49, "ema_20": 19, "ema_50": 49, "wma_20": 19, "rsi_14": 14, "atr_14": 14,
    "macd_12_26_9": 33, "bb_upper_20_2": 19, "stoch_k_5_3_3": 8, "adx_14": 27, "obv": 0, "vwap_20": 19,
    "volatility_20": 20, "zscore_20": 19,
    **{"cdl_" + name: pattern.lookback for name, pattern in PATTERNS.items()},
}
# Short and long periods: every reseed and rebuild path of the running sums runs many times.
UNUSUAL = (
    "sma_2", "sma_200", "ema_2", "ema_9", "wma_2", "wma_3", "wma_100", "rsi_2", "rsi_30", "macd_3_5_1",
    "macd_5_35_5", "bb_2_1", "bb_5_0.5", "bb_10_2.5", "atr_2", "atr_30", "stoch_3_1_1", "stoch_14_3_5",
    "adx_2", "adx_30", "vwap_2", "vwap_50", "volatility_2", "volatility_100", "zscore_2", "zscore_100",
)


def _numbers(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    return {column: frame[column].to_numpy(dtype=np.float64, na_value=np.nan) for column in frame.columns}


def test_streaming_set_equals_batch_to_1e_9_on_real_candles(candles: pd.DataFrame) -> None:
    batch_frame = compute_batch(candles)
    streamed = compute_streaming(candles)
    assert list(batch_frame.columns) == ["open_time", *REQUIRED_COLUMNS]
    pd.testing.assert_frame_equal(streamed, batch_frame, check_exact=False, rtol=1e-9, atol=0.0)
    for column, first in WARM_UP.items():
        values = batch_frame[column]
        assert values.iloc[:first].isna().all(), column
        assert values.iloc[first:].notna().all() or column == "vwap_20", column


def test_streaming_values_are_bit_identical_to_talib(candles: pd.DataFrame) -> None:
    batch_values, streamed = _numbers(compute_batch(candles)), _numbers(compute_streaming(candles))
    differing = [
        column for column in batch_values
        if not np.array_equal(batch_values[column], streamed[column], equal_nan=True)
    ]
    assert differing == []


@pytest.mark.parametrize("dataset", [DATASETS[1], DATASETS[4]], ids=lambda d: d[0])
def test_unusual_parameters_match_too(dataset: tuple[str, str, int, int]) -> None:
    candles = load(*dataset[1:]).copy()
    batch_values = _numbers(compute_batch(candles, UNUSUAL))
    streamed = _numbers(compute_streaming(candles, UNUSUAL))
    for column, values in batch_values.items():
        assert np.array_equal(values, streamed[column], equal_nan=True), column


def test_every_pattern_is_seen_on_the_real_candles() -> None:
    """Equality on patterns that never fire would prove little: each one fires somewhere here."""
    names = [name for name in DEFAULT_INDICATORS if name.startswith("cdl_")]
    hits = dict.fromkeys(names, 0)
    for _, file, start, rows in DATASETS:
        frame = compute_batch(load(file, start, rows), names)
        for name in names:
            hits[name] += int((frame[name].fillna(0) != 0).sum())
    assert all(count > 0 for count in hits.values()), hits


def test_pattern_lookbacks_are_talibs() -> None:
    for pattern in PATTERNS.values():
        assert abstract.Function(pattern.function).lookback == pattern.lookback, pattern.name


@st.composite
def tick_candles(draw: st.DrawFn) -> pd.DataFrame:
    """Candles on a coarse tick grid: ties, flat windows, zero volume, gaps and the odd huge print."""
    steps = draw(st.lists(st.integers(-4, 4), min_size=40, max_size=160))
    count = len(steps)
    wicks = draw(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3)), min_size=count, max_size=count))
    volumes = draw(st.lists(st.sampled_from([0.0, 0.0, 1.0, 2.5, 10.0, 1e6]), min_size=count, max_size=count))
    tick = draw(st.sampled_from([1e-5, 0.01, 0.5, 25.0]))
    spike = draw(st.one_of(st.none(), st.integers(0, count - 1)))
    close = 2000 + np.cumsum(steps)
    open_ = np.concatenate([[close[0]], close[:-1]])
    high = np.maximum(open_, close) + [up for up, _ in wicks]
    low = np.minimum(open_, close) - [down for _, down in wicks]
    frame = pd.DataFrame({
        "open_time": np.arange(count, dtype=np.int64) * 60_000, "open": open_ * tick, "high": high * tick,
        "low": low * tick, "close": close * tick, "volume": volumes,
    })
    if spike is not None:  # one print 1000x away: exercises the outlier rebuild of the running sums
        frame.loc[spike, ["open", "high", "low", "close"]] *= 1000.0
    return frame


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frame=tick_candles())
def test_streaming_equals_batch_on_adversarial_candles(frame: pd.DataFrame) -> None:
    names = (*DEFAULT_INDICATORS, "wma_2", "zscore_2", "volatility_2", "bb_2_1", "stoch_3_1_1")
    batch_values = _numbers(compute_batch(frame, names))
    streamed = _numbers(compute_streaming(frame, names))
    for column, values in batch_values.items():
        assert np.array_equal(values, streamed[column], equal_nan=True), column


@settings(max_examples=25, deadline=None)
@given(cut=st.integers(1, 600))
def test_a_talib_value_depends_only_on_the_candles_before_it(cut: int) -> None:
    """What makes prefix comparisons meaningful: TA-Lib on candles[:cut] is the head of TA-Lib on all."""
    frame = load(*DATASETS[0][1:]).iloc[:600]
    o, h, lo, c, v = (frame[name].to_numpy() for name in ("open", "high", "low", "close", "volume"))
    head = slice(None, cut)
    pairs = [
        (batch.wma(c[head]), batch.wma(c)),
        (batch.rsi(c[head]), batch.rsi(c)),
        (batch.atr(h[head], lo[head], c[head]), batch.atr(h, lo, c)),
        (batch.adx(h[head], lo[head], c[head]), batch.adx(h, lo, c)),
        (batch.vwap(h[head], lo[head], c[head], v[head]), batch.vwap(h, lo, c, v)),
        (batch.zscore(c[head]), batch.zscore(c)),
        (batch.volatility(c[head]), batch.volatility(c)),
        *zip(batch.macd(c[head]), batch.macd(c), strict=True),
        *zip(batch.bbands(c[head]), batch.bbands(c), strict=True),
        *zip(batch.stoch(h[head], lo[head], c[head]), batch.stoch(h, lo, c), strict=True),
        (talib.CDL3WHITESOLDIERS(o[head], h[head], lo[head], c[head]), talib.CDL3WHITESOLDIERS(o, h, lo, c)),
    ]
    for prefix, whole in pairs:
        assert np.array_equal(prefix, whole[:cut], equal_nan=True)


def test_default_set_parses_to_the_documented_columns() -> None:
    specs = parse_indicators(DEFAULT_INDICATORS)
    assert [column for spec in specs for column in spec.columns] == list(REQUIRED_COLUMNS)
