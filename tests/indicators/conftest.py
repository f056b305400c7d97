"""Fixtures of the indicator tests: real candles of several symbols and timeframes."""

from __future__ import annotations

import pandas as pd
import pytest
from indicator_data import DATASETS, load


@pytest.fixture(params=DATASETS, ids=[dataset[0] for dataset in DATASETS])
def candles(request: pytest.FixtureRequest) -> pd.DataFrame:
    _, file, start, rows = request.param
    return load(file, start, rows).copy()
