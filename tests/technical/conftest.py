"""Fixtures of the technical tests: real candles and a model trained on other real candles."""

from __future__ import annotations

import pytest
from technical_data import real_envelopes, trained_model

from agents.technical.model import DecisionModel
from topics.envelope import Envelope
from topics.market import CandleClosed


@pytest.fixture(scope="session")
def candles() -> list[Envelope[CandleClosed]]:
    """1,200 real hourly candles each of BTC/USDT and ETH/USDT, merged by event time."""
    return real_envelopes()


@pytest.fixture(scope="session")
def model() -> DecisionModel:
    return trained_model()
