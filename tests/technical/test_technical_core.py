"""The technical core on real candles: signals and snapshots match batch indicators, decisions match the
tree, restarts continue exactly, same input gives the same bytes."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import orjson
import pandas as pd
import pytest
from technical_data import HORIZON, run

from agents.technical.core import NO_MODEL, TechnicalCore
from agents.technical.features import RETURN_LAGS, VOLUME_Z, batch_columns, feature_matrix, feature_row
from agents.technical.model import BATCH_INDICATORS, DecisionModel
from config.errors import ConfigError
from config.settings import TechnicalConfig
from indicators import StreamingIndicatorSet, compute_batch, cross
from indicators.batch import zscore
from indicators.streaming import ZScore
from topics.envelope import Envelope
from topics.market import CandleClosed
from topics.technical import TechnicalSignal

CONFIG = TechnicalConfig(horizon=HORIZON)


def frame_of(candles: list[Envelope[CandleClosed]], symbol: str) -> pd.DataFrame:
    rows = [env.payload for env in candles if env.payload.symbol == symbol]
    columns = ("open_time", "open", "high", "low", "close", "volume")
    return pd.DataFrame({column: [getattr(c, column) for c in rows] for column in columns})


def signals_of(outputs: list[Envelope], symbol: str) -> list[TechnicalSignal]:
    return [env.payload for env in outputs
            if isinstance(env.payload, TechnicalSignal) and env.payload.symbol == symbol]


def expected_signals(frame: pd.DataFrame, config: TechnicalConfig) -> dict[str, list[int]]:
    """Where each signal must fire, from TA-Lib batch indicators over the same candles."""
    batch = compute_batch(frame)
    times = frame["open_time"].to_numpy()
    close = frame["close"].to_numpy()
    found: dict[str, list[int]] = defaultdict(list)

    def mark(name: str, where: np.ndarray) -> None:
        found[name].extend(times[where].tolist())

    for name, a, b in (("ema_cross", "ema_20", "ema_50"), ("sma_cross", "sma_20", "sma_50"),
                       ("macd_cross", "macd_12_26_9", "macd_signal_12_26_9")):
        crossed = cross(batch[a], batch[b])
        mark(f"{name}_up", crossed == 1)
        mark(f"{name}_down", crossed == -1)
    mark("rsi_overbought", cross(batch["rsi_14"], config.rsi_overbought) == 1)
    mark("rsi_oversold", cross(batch["rsi_14"], config.rsi_oversold) == -1)
    mark("bb_breakout_up", cross(close, batch["bb_upper_20_2"]) == 1)
    mark("bb_breakout_down", cross(close, batch["bb_lower_20_2"]) == -1)
    mark("volume_spike", cross(zscore(frame["volume"].to_numpy(), 20), config.volume_z_threshold) == 1)
    width = (batch["bb_upper_20_2"] - batch["bb_lower_20_2"]) / batch["bb_middle_20_2"]
    narrowest_before = width.shift(1).rolling(config.squeeze_lookback).min()
    squeezed = (width <= narrowest_before).to_numpy()
    mark("bb_squeeze", squeezed & ~np.concatenate([[False], squeezed[:-1]]))
    for column in [c for c in batch.columns if c.startswith("cdl_")]:
        values = batch[column].fillna(0).to_numpy(dtype=int)
        if column == "cdl_engulfing":
            mark("cdl_engulfing_bullish", values > 0)
            mark("cdl_engulfing_bearish", values < 0)
        else:
            mark(column, values != 0)
    return {name: sorted(ts) for name, ts in found.items() if ts}


@pytest.mark.parametrize("symbol", ["BTC/USDT", "ETH/USDT"])
def test_signals_fire_exactly_where_the_batch_indicators_say(
    candles: list[Envelope[CandleClosed]], symbol: str,
) -> None:
    outputs = run(TechnicalCore(CONFIG), candles)
    got: dict[str, list[int]] = defaultdict(list)
    for signal in signals_of(outputs, symbol):
        for detected in signal.signals:
            got[detected.name].append(signal.open_time)
    expected = expected_signals(frame_of(candles, symbol), CONFIG)
    assert dict(got) == expected
    # The real data exercises every kind of signal, not just a few.
    kinds = {"ema_cross_up", "sma_cross_down", "macd_cross_up", "rsi_overbought", "rsi_oversold",
             "bb_breakout_up", "bb_breakout_down", "bb_squeeze", "volume_spike", "cdl_doji", "cdl_hammer",
             "cdl_engulfing_bullish", "cdl_engulfing_bearish"}
    assert kinds <= set(expected)


def test_the_snapshot_holds_the_batch_indicator_values(candles: list[Envelope[CandleClosed]]) -> None:
    frame = frame_of(candles, "BTC/USDT")
    batch = compute_batch(frame)
    snapshots = signals_of(run(TechnicalCore(CONFIG), candles), "BTC/USDT")
    assert len(snapshots) == len(frame)
    for column in batch.columns.drop("open_time"):
        expected = [None if pd.isna(value) else value for value in batch[column].tolist()]
        assert [s.indicators[column] for s in snapshots] == expected, column
    volume_z = zscore(frame["volume"].to_numpy(), 20)
    assert [s.indicators[VOLUME_Z] for s in snapshots] == [None if np.isnan(v) else v for v in volume_z]


def test_live_features_equal_the_training_features_to_the_bit(candles: list[Envelope[CandleClosed]]) -> None:
    frame = frame_of(candles, "ETH/USDT")
    trained_on = feature_matrix(batch_columns(frame, compute_batch(frame, BATCH_INDICATORS)))
    indicators, volume_z, closes, live = StreamingIndicatorSet(), ZScore(20), [], []
    for env in candles:
        if env.payload.symbol == "ETH/USDT":
            values = indicators.update(env.payload)
            closes.append(env.payload.close)
            live.append(feature_row(values, env.payload.close, volume_z.update(env.payload.volume), closes))
    live_matrix = np.array(live)
    assert live_matrix.shape == trained_on.shape
    assert np.array_equal(live_matrix, trained_on, equal_nan=True)
    assert np.isfinite(trained_on[60:]).all()  # warm-up is over after MACD's 33 and the 24-candle return
    assert np.isnan(trained_on[: max(RETURN_LAGS)]).any(axis=1).all()


def test_decisions_are_the_trees_answers_once_the_features_are_known(
    candles: list[Envelope[CandleClosed]], model: DecisionModel,
) -> None:
    frame = frame_of(candles, "BTC/USDT")
    features = feature_matrix(batch_columns(frame, compute_batch(frame, BATCH_INDICATORS)))
    ready = np.isfinite(features).all(axis=1)
    expected = np.full(len(frame), "hold", dtype=object)
    expected[ready] = model.tree.predict(features[ready])
    shares = model.tree.predict_proba(features[ready]).max(axis=1)

    decisions = [s.decision for s in signals_of(run(TechnicalCore(CONFIG, model), candles), "BTC/USDT")]
    assert [d.action for d in decisions] == expected.tolist()
    assert [d.probability for d in decisions if d.probability is not None] == pytest.approx(shares, rel=1e-12)
    assert all(d.reason.startswith("warming up") and d.model_version is None
               for d, ok in zip(decisions, ready, strict=True) if not ok)
    assert all(d.model_version == model.version for d, ok in zip(decisions, ready, strict=True) if ok)
    assert {"buy", "sell"} <= {d.action for d in decisions}


def test_without_a_model_every_decision_is_hold_because_no_model_was_trained(
    candles: list[Envelope[CandleClosed]],
) -> None:
    decisions = [s.decision for s in signals_of(run(TechnicalCore(CONFIG), candles[:300]), "ETH/USDT")]
    assert decisions
    seen = {(d.action, d.reason, d.model_version, d.probability) for d in decisions}
    assert seen == {("hold", NO_MODEL, None, None)}


def test_a_restart_from_saved_state_continues_identically_and_ignores_seen_candles(
    candles: list[Envelope[CandleClosed]], model: DecisionModel,
) -> None:
    straight = run(TechnicalCore(CONFIG, model), candles)
    first = TechnicalCore(CONFIG, model)
    half = len(candles) // 2
    before = run(first, candles[:half])
    saved = {key: orjson.loads(orjson.dumps(first.state_of(key))) for key in sorted(first.touched)}
    resumed = TechnicalCore(CONFIG, model)
    for key, state in saved.items():
        resumed.restore(key, state)
    # After a crash the runtime re-reads some already-seen candles: they must change nothing.
    after = run(resumed, candles[half - 50:])
    assert [e.model_dump_json() for e in before + after] == [e.model_dump_json() for e in straight]


def test_same_input_same_output_bytes(candles: list[Envelope[CandleClosed]], model: DecisionModel) -> None:
    one = [e.model_dump_json() for e in run(TechnicalCore(CONFIG, model), candles)]
    two = [e.model_dump_json() for e in run(TechnicalCore(CONFIG, model), candles)]
    assert one == two


def test_bad_extra_indicators_and_mismatched_saved_state_are_one_line_config_errors(
    candles: list[Envelope[CandleClosed]],
) -> None:
    with pytest.raises(ConfigError, match=r"^technical\.indicators: indicator 'rsi_x': period must be an"):
        TechnicalCore(TechnicalConfig(indicators=["rsi_x"]))
    core = TechnicalCore(CONFIG)
    run(core, candles[:10])
    key = candles[0].key
    with_more = TechnicalCore(TechnicalConfig(horizon=HORIZON, indicators=["ema_200"]))
    assert "ema_200" in with_more.names
    with pytest.raises(ConfigError, match=r"has other indicators than technical\.indicators asks for"):
        with_more.restore(key, core.state_of(key))
