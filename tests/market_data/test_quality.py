"""The candle data-quality policy: each anomaly is repaired with a reason or rejected, never lost."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.market_data.files import read_raw_candles, shared_datasets
from agents.market_data.quality import CandleQualityGate, RawCandle, clean_frame, infer_timeframe

HOUR = 3_600_000
REAL = shared_datasets() / "ohlcv" / "binance_spot_1h_2017-2022" / "BTC_USDT-1h.csv.gz"


def c(t: int, *, o: float = 100, h: float = 110, lo: float = 90, cl: float = 105, v: float = 1) -> RawCandle:
    return RawCandle(t * HOUR, o, h, lo, cl, v)


@pytest.mark.parametrize(
    ("candle", "reason"),
    [
        (c(1, o=math.nan), "not a number"),
        (c(1, cl=0.0), "non-positive"),
        (c(1, lo=-1.0), "non-positive"),
        (c(1, h=80, lo=90), "high 80 below low 90"),
        (c(1, v=-2.0), "negative"),
    ],
)
def test_unrepairable_candles_are_rejected_with_the_reason(candle: RawCandle, reason: str) -> None:
    verdict = CandleQualityGate("1h").check(candle)
    assert verdict.candle is None
    assert verdict.rejected is not None
    assert reason in verdict.rejected


def test_nan_volume_and_ohlc_outside_the_range_are_repaired_and_say_so() -> None:
    gate = CandleQualityGate("1h")
    nan_volume = gate.check(c(1, v=math.nan))
    assert nan_volume.candle == c(1, v=0.0)
    assert nan_volume.repairs == (f"volume was NaN at {HOUR}: set to 0",)

    wide = gate.check(c(2, o=120, h=110, lo=90, cl=85))
    assert wide.candle == c(2, o=120, h=120, lo=85, cl=85)
    assert "high 110->120" in wide.repairs[0]
    assert "low 90->85" in wide.repairs[0]


def test_duplicates_order_alignment_and_gaps() -> None:
    gate = CandleQualityGate("1h")
    assert gate.check(c(10)).candle == c(10)
    exact = gate.check(c(10))
    assert exact.candle is None
    assert exact.rejected is None
    assert "exact duplicate" in exact.repairs[0]
    conflicting = gate.check(c(10, cl=106))
    assert conflicting.rejected is not None
    assert "conflicting duplicate" in conflicting.rejected
    late = gate.check(c(9))
    assert late.rejected is not None
    assert "out of order" in late.rejected
    misaligned = gate.check(RawCandle(10 * HOUR + 60_000, 100, 110, 90, 105, 1))
    assert misaligned.rejected is not None
    assert "not aligned" in misaligned.rejected
    after_gap = gate.check(c(14))
    assert after_gap.candle == c(14)
    assert after_gap.missing_before == 3


def test_state_survives_a_restart() -> None:
    gate = CandleQualityGate("1h")
    gate.check(c(5))
    restored = CandleQualityGate.from_state(gate.to_state())
    assert restored.check(c(5)).candle is None  # still knows the last candle: a duplicate
    assert restored.check(c(7)).missing_before == 1


def test_a_real_file_with_injected_anomalies_is_cleaned_and_every_row_accounted_for() -> None:
    real = read_raw_candles(REAL).iloc[:300].reset_index(drop=True)
    rows = real.to_dict("records")
    rows[50]["volume"] = math.nan                                   # repaired
    rows[60]["high"] = rows[60]["low"] - 1                          # rejected
    rows[70]["close"] = 0.0                                         # rejected
    rows[80]["open"] = rows[80]["high"] * 1.01                      # repaired (high widened)
    rows.insert(100, dict(rows[99]))                                # exact duplicate: dropped
    rows.insert(120, dict(rows[119], close=rows[119]["close"] * 1.001))  # conflicting: rejected
    rows[130], rows[131] = rows[131], rows[130]                     # out of order: sorted
    del rows[200:203]                                               # a gap of 3
    frame = pd.DataFrame(rows)

    result = clean_frame(frame, source="test")
    cleaned = result.frame
    assert cleaned["open_time"].is_monotonic_increasing
    assert cleaned["open_time"].is_unique
    assert (cleaned["low"] <= cleaned[["open", "close"]].min(axis=1)).all()
    assert (cleaned["high"] >= cleaned[["open", "close"]].max(axis=1)).all()
    assert not cleaned.isna().any().any()
    assert result.sorted_rows == 1
    assert len(result.rejects) == 3
    assert sum(missing for _, missing in result.gaps) >= 3
    dropped_duplicates = sum("exact duplicate" in reason for _, reason in result.repairs)
    assert dropped_duplicates == 1
    assert len(cleaned) + len(result.rejects) + dropped_duplicates == len(frame)


finite_price = st.floats(min_value=-5, max_value=200) | st.just(math.nan)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 30), finite_price, finite_price, finite_price, finite_price,
                          finite_price), max_size=40))
def test_no_row_is_ever_silently_lost(rows: list[tuple[int, float, float, float, float, float]]) -> None:
    frame = pd.DataFrame(
        [(t * HOUR, o, h, lo, cl, v) for t, o, h, lo, cl, v in rows],
        columns=["open_time", "open", "high", "low", "close", "volume"],
    )
    result = clean_frame(frame, timeframe="1h", source="property")
    dropped = sum("exact duplicate" in reason for _, reason in result.repairs)
    assert len(result.frame) + len(result.rejects) + dropped == len(frame)
    assert result.frame["open_time"].is_unique


def test_timeframe_inference() -> None:
    assert infer_timeframe(pd.Series([0, 1, 2, 4]).to_numpy() * HOUR) == "1h"
    assert infer_timeframe(pd.Series([0, 5, 10]).to_numpy() * 60_000) == "5m"
    assert infer_timeframe(pd.Series([7]).to_numpy()) is None
