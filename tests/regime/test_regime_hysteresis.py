"""Hysteresis: a new regime needs `confirm` proposals in a row and `min_dwell` candles since the last."""

from __future__ import annotations

import itertools
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestrator.regime import REGIMES, Hysteresis, HysteresisConfig


def feed(h: Hysteresis, proposals: list[str]) -> list[int]:
    """Indices of the proposals on which the confirmed regime changed."""
    return [i for i, proposal in enumerate(proposals) if h.step(proposal)]


def test_the_first_regime_needs_confirmation_only() -> None:
    h = Hysteresis(HysteresisConfig(confirm=3, min_dwell=10))
    assert feed(h, ["bull", "bull"]) == []
    assert h.regime is None
    assert h.step("bull")
    assert h.regime == "bull"


def test_no_flip_before_the_dwell_even_when_confirmed() -> None:
    h = Hysteresis(HysteresisConfig(confirm=2, min_dwell=10))
    feed(h, ["bull"] * 2)
    changes = feed(h, ["bear"] * 12)
    assert changes == [9]  # the 10th candle after the change to bull
    assert h.regime == "bear"


def test_a_new_regime_needs_consecutive_confirmation() -> None:
    h = Hysteresis(HysteresisConfig(confirm=3, min_dwell=1))
    feed(h, ["bull"] * 3)
    assert feed(h, ["bear", "bear", "bull", "bear", "bear", "neutral", "bear", "bear"]) == []
    assert h.regime == "bull"
    assert h.step("bear")  # the third in a row


def test_a_proposal_of_the_current_regime_resets_the_candidate() -> None:
    h = Hysteresis(HysteresisConfig(confirm=2, min_dwell=1))
    feed(h, ["neutral"] * 2)
    assert feed(h, ["bull", "neutral", "bull", "neutral"]) == []
    assert h.regime == "neutral"


def test_bad_config_names_the_key() -> None:
    with pytest.raises(ValueError, match="regime min_dwell must be an integer >= 1, got 0"):
        HysteresisConfig(min_dwell=0)


@given(
    proposals=st.lists(st.sampled_from(REGIMES), max_size=300),
    confirm=st.integers(1, 6), min_dwell=st.integers(1, 30), split=st.integers(0, 300),
)
def test_changes_are_never_closer_than_the_dwell_and_each_is_confirmed(
    proposals: list[str], confirm: int, min_dwell: int, split: int,
) -> None:
    config = HysteresisConfig(confirm=confirm, min_dwell=min_dwell)
    changes = feed(Hysteresis(config), proposals)
    assert all(b - a >= min_dwell for a, b in itertools.pairwise(changes))
    for i in changes:
        assert i + 1 >= confirm
        assert len(set(proposals[i + 1 - confirm: i + 1])) == 1
    # a JSON round trip of the state anywhere continues identically
    head = Hysteresis(config)
    first = feed(head, proposals[:split])
    restored = Hysteresis.from_state(json.loads(json.dumps(head.to_state())), config)
    rest = [i + len(proposals[:split]) for i in feed(restored, proposals[split:])]
    assert first + rest == changes
