"""Beta-Binomial hit rates: the posterior math, what counts as a hit, and online settling in event time."""

from __future__ import annotations

from collections import defaultdict

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats
from technical_data import HORIZON, run

from agents.technical.confidence import HitRates, is_hit, posterior
from agents.technical.core import TechnicalCore
from agents.technical.model import DecisionModel
from config.settings import TechnicalConfig
from topics.envelope import Envelope
from topics.market import CandleClosed
from topics.technical import TechnicalSignal

HOUR = 3_600_000


def test_the_uniform_prior_before_any_outcome() -> None:
    mean, lower, upper = posterior(0, 0, 0.9)
    assert mean == 0.5
    assert lower == pytest.approx(0.05, abs=1e-12)  # Beta(1, 1) is uniform: quantiles are the levels
    assert upper == pytest.approx(0.95, abs=1e-12)


@given(trials=st.integers(0, 5000), share=st.floats(0, 1), level=st.floats(0.5, 0.99))
def test_posterior_is_beta_one_plus_hits_one_plus_misses(trials: int, share: float, level: float) -> None:
    hits = round(trials * share)
    mean, lower, upper = posterior(hits, trials, level)
    belief = stats.beta(1 + hits, 1 + trials - hits)
    assert mean == pytest.approx((1 + hits) / (2 + trials), rel=1e-12)
    assert mean == pytest.approx(belief.mean(), rel=1e-9)
    assert lower == pytest.approx(belief.ppf((1 - level) / 2), rel=1e-7, abs=1e-12)
    assert upper == pytest.approx(belief.ppf((1 + level) / 2), rel=1e-7, abs=1e-12)
    assert 0 <= lower <= mean <= upper <= 1


def test_more_evidence_narrows_the_interval_around_the_observed_rate() -> None:
    few = posterior(6, 10, 0.9)
    many = posterior(600, 1000, 0.9)
    assert many[2] - many[1] < (few[2] - few[1]) / 5
    assert many[0] == pytest.approx(0.6, abs=0.001)
    with pytest.raises(ValueError, match="hits must be between 0 and trials"):
        posterior(3, 2, 0.9)


@pytest.mark.parametrize(("expects", "change", "hit"), [
    ("up", 0.0021, True), ("up", 0.002, False), ("up", -0.01, False),
    ("down", -0.0021, True), ("down", -0.002, False), ("down", 0.01, False),
    ("move", 0.003, True), ("move", -0.003, True), ("move", 0.001, False),
    ("flat", 0.002, True), ("flat", -0.0019, True), ("flat", 0.0021, False),
])
def test_a_hit_beats_the_round_trip_fee_in_the_expected_direction(
    expects: str, change: float, hit: bool,
) -> None:
    assert is_hit(expects, change, 0.002) is hit


def test_a_pending_signal_settles_on_the_candle_it_is_due_not_before() -> None:
    rates = HitRates()
    rates.expect("ema_cross_up", "up", "bull", entry=100.0, due=10 * HOUR)
    rates.expect("ema_cross_up", "up", "bull", entry=100.0, due=11 * HOUR)
    assert rates.settle(9 * HOUR, close=200.0, threshold=0.002) == 0
    assert rates.confidence("ema_cross_up", "bull", 0.9).trials == 0
    assert rates.settle(10 * HOUR, close=101.0, threshold=0.002) == 1  # +1%: a hit
    after_one = rates.confidence("ema_cross_up", "bull", 0.9)
    assert (after_one.hits, after_one.trials, after_one.mean) == (1, 1, 2 / 3)
    assert rates.confidence("ema_cross_up", "bear", 0.9).trials == 0  # regimes are counted apart
    assert rates.settle(12 * HOUR, close=99.0, threshold=0.002) == 1  # a gap: the next candle settles it
    final = rates.confidence("ema_cross_up", "bull", 0.9)
    assert (final.hits, final.trials) == (1, 2)
    restored = HitRates.from_state(rates.to_state())
    assert restored.counts == rates.counts
    assert list(restored.pending) == list(rates.pending)


def test_every_confidence_counts_exactly_the_outcomes_known_when_it_was_emitted(
    candles: list[Envelope[CandleClosed]], model: DecisionModel,
) -> None:
    """Recount from scratch: a signal at candle i is settled by the close of candle i + horizon."""
    config = TechnicalConfig(horizon=HORIZON)
    threshold = 2 * config.fee
    btc = [env.payload for env in run(TechnicalCore(config, model), candles)
           if isinstance(env.payload, TechnicalSignal) and env.payload.symbol == "BTC/USDT"]
    emitted: list[tuple[int, str, str, str]] = []  # (candle index, name, expects, regime)
    checked = 0
    for i, snapshot in enumerate(btc):
        counts: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
        for j, name, expects, regime in emitted:
            if j + HORIZON <= i:  # consecutive hourly candles: due exactly HORIZON candles later
                change = btc[j + HORIZON].close / btc[j].close - 1
                counts[name, regime][0] += is_hit(expects, change, threshold)
                counts[name, regime][1] += 1
        decision = snapshot.decision
        for name, confidence in [(s.name, s.confidence) for s in snapshot.signals] + [
            (f"decision_{decision.action}", decision.confidence)
        ]:
            assert confidence.regime == snapshot.regime
            assert [confidence.hits, confidence.trials] == counts[name, snapshot.regime], (i, name)
            checked += 1
        emitted += [(i, s.name, s.expects, snapshot.regime) for s in snapshot.signals]
        expects = {"buy": "up", "sell": "down", "hold": "flat"}[decision.action]
        emitted.append((i, f"decision_{decision.action}", expects, snapshot.regime))
    assert checked > len(btc)
    assert max(s.decision.confidence.trials for s in btc) > 100
