"""No look-ahead: changing the candles after time t never changes anything emitted at or before t.

The whole core runs — indicators, regime, signals, hit-rate settling, the decision tree, alert
rules across streams (top-N) — first on real candles, then on a copy whose candles after t are
rescaled or shuffled; every output with event time <= t must be byte-identical.
"""

from __future__ import annotations

import random

import numpy as np
import pandas as pd
import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st
from technical_data import HORIZON, envelopes_of, raw_rows, run

from agents.market_data.quality import RawCandle
from agents.technical.core import TechnicalCore
from agents.technical.features import batch_columns, feature_matrix
from agents.technical.model import BATCH_INDICATORS, DecisionModel
from config.settings import AlertRule, TechnicalConfig
from indicators import compute_batch
from topics.envelope import Envelope

HOUR = 3_600_000
SYMBOLS = ("BTC/USDT", "ETH/USDT")
ROWS = 700
CONFIG = TechnicalConfig(horizon=HORIZON, alerts=[
    AlertRule(name="oversold", when="rsi_14 < 35", cooldown=3),
    AlertRule(name="leader_golden_cross", when="ema_20 crosses_above ema_50", symbols="top1"),
    AlertRule(name="pump", when="change_pct(12) > 2"),
])
ORIGINAL = {symbol: raw_rows(symbol, ROWS) for symbol in SYMBOLS}
FIRST_CLOSE = ORIGINAL["BTC/USDT"][0].open_time + HOUR


def altered(rows: list[RawCandle], t: int, how: str, factor: float, seed: int) -> list[RawCandle]:
    """`rows` with every candle that closes after `t` changed (still valid candles)."""
    keep = [row for row in rows if row.open_time + HOUR <= t]
    later = [row for row in rows if row.open_time + HOUR > t]
    if how == "scale":
        changed = [RawCandle(r.open_time, r.open * factor, r.high * factor, r.low * factor, r.close * factor,
                             r.volume / factor) for r in later]
    else:  # shuffle the prices and volumes among the later candles, keeping their times
        values = [(r.open, r.high, r.low, r.close, r.volume) for r in later]
        random.Random(seed).shuffle(values)
        if values == [(r.open, r.high, r.low, r.close, r.volume) for r in later]:
            values = values[1:] + values[:1]  # the shuffle kept every candle in place: move them anyway
        changed = [RawCandle(r.open_time, *v) for r, v in zip(later, values, strict=True)]
    return keep + changed


def outputs(streams: dict[str, list[RawCandle]], model: DecisionModel) -> list[Envelope]:
    return run(TechnicalCore(CONFIG, model), envelopes_of(streams.items()))


@pytest.fixture(scope="module")
def original(model: DecisionModel) -> list[Envelope]:
    return outputs(ORIGINAL, model)


@settings(max_examples=6, deadline=None)
@given(
    hours=st.integers(1, ROWS - 1),
    how=st.sampled_from(["scale", "shuffle"]),
    factor=st.floats(0.5, 2.0).filter(lambda f: abs(f - 1) > 0.01),
    seed=st.integers(0, 1000),
)
@example(hours=60, how="scale", factor=1.37, seed=0)  # just after the features warm up
@example(hours=400, how="shuffle", factor=2.0, seed=7)
@example(hours=ROWS - 2, how="scale", factor=0.6, seed=0)
@example(hours=ROWS - 2, how="shuffle", factor=2.0, seed=0)  # two later candles: a shuffle may keep them
def test_changing_candles_after_t_changes_nothing_emitted_at_or_before_t(
    original: list[Envelope], model: DecisionModel, *, hours: int, how: str, factor: float, seed: int,
) -> None:
    assume(how == "scale" or hours < ROWS - 1)  # shuffling a single later candle changes nothing
    t = FIRST_CLOSE + (hours - 1) * HOUR  # the close of the `hours`-th candle
    changed = outputs({s: altered(rows, t, how, factor, seed) for s, rows in ORIGINAL.items()}, model)
    before = [env.model_dump_json() for env in original if env.ts <= t]
    assert before, "nothing emitted before t"
    assert [env.model_dump_json() for env in changed if env.ts <= t] == before
    # ...and the change is real: something after t differs.
    assert [env.model_dump_json() for env in changed if env.ts > t] != [
        env.model_dump_json() for env in original if env.ts > t
    ]


@pytest.mark.parametrize("hours", [40, 300, 650])
def test_training_features_of_a_candle_ignore_every_later_candle(hours: int) -> None:
    def features(rows: list[RawCandle]) -> np.ndarray:
        frame = pd.DataFrame(rows, columns=["open_time", "open", "high", "low", "close", "volume"])
        return feature_matrix(batch_columns(frame, compute_batch(frame, BATCH_INDICATORS)))

    t = FIRST_CLOSE + (hours - 1) * HOUR
    rows = ORIGINAL["ETH/USDT"]
    full, cut = features(rows), features(altered(rows, t, "scale", 1.7, 0))
    assert np.array_equal(full[:hours], cut[:hours], equal_nan=True)
    assert not np.array_equal(full[hours:], cut[hours:], equal_nan=True)
