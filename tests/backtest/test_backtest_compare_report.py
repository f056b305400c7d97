"""Comparison (ranking, regime breakdown) and the HTML and PNG reports, on synthetic results."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from analytics_data import hourly_index, random_walk_candles, result, trade

from backtest.benchmarks import buy_and_hold, equal_weight
from backtest.compare import compare, detect_regimes, label_of, regime_breakdown, regimes_for
from backtest.report import Curve, Section, write_html, write_png


def test_labels_name_only_the_parameters_that_differ_from_the_defaults() -> None:
    assert label_of("sma_cross", {"fast": 10, "slow": 30}) == "sma_cross"
    assert label_of("sma_cross", {"fast": 5, "slow": 30}) == "sma_cross(fast=5)"
    assert label_of("trend", {"atr_multiple": 2.5}) == "trend(atr_multiple=2.5)"


def test_results_are_ranked_by_the_chosen_metric_best_first() -> None:
    steady = result([100, 101, 102, 103, 104, 105], starting=100, params={"fast": 5, "slow": 30})
    wild = result([100, 120, 90, 130, 95, 140], starting=100, params={"fast": 7, "slow": 30})
    losing = result([100, 99, 98, 97, 96, 95], starting=100)
    by_return = compare([steady, wild, losing], rank_by="total_return")
    assert [e.label for e in by_return.entries] == ["sma_cross(fast=7)", "sma_cross(fast=5)", "sma_cross"]
    by_drawdown = compare([wild, losing, steady], rank_by="max_drawdown")  # lower is better
    assert [e.label for e in by_drawdown.entries] == ["sma_cross(fast=5)", "sma_cross", "sma_cross(fast=7)"]
    table = by_return.table(["total_return", "max_drawdown"])
    assert list(table.index) == [e.label for e in by_return.entries]
    assert table.loc["sma_cross(fast=7)", "total_return"] == pytest.approx(0.4)
    twice = compare([steady, steady])
    assert [e.label for e in twice.entries] == ["sma_cross(fast=5)", "sma_cross(fast=5) #2"]
    with pytest.raises(ValueError, match="cannot rank by"):
        compare([steady], rank_by="luck")
    payload = by_return.to_dict()
    assert [row["rank"] for row in payload["ranking"]] == [1, 2, 3]


def test_regime_breakdown_compounds_only_the_bars_of_each_regime() -> None:
    equity = pd.Series([110, 99, 108.9, 119.79], index=hourly_index(4), dtype=float)
    regimes = pd.Series(["bull", "bear", "bull", "bull"], index=equity.index)
    out = regime_breakdown(equity, 100.0, regimes)
    assert set(out) == {"bull", "bear"}
    assert out["bull"]["bars"] == 3
    assert out["bull"]["share"] == pytest.approx(0.75)
    assert out["bull"]["total_return"] == pytest.approx(1.1 ** 3 - 1)  # +10 % three times
    assert out["bear"]["total_return"] == pytest.approx(-0.1)
    assert out["bear"]["max_drawdown"] == pytest.approx(0.1)
    ranked = compare([result([110, 99, 108.9, 119.79], starting=100)], regimes=regimes)
    assert ranked.best_per_regime("total_return") == {"bull": "sma_cross", "bear": "sma_cross"}
    assert list(ranked.regime_table("total_return").columns) == ["bull", "bear"]


def test_detected_regimes_are_causal_and_aligned_to_the_equity_bars() -> None:
    candles = random_walk_candles(700, seed=2, drift=0.002)
    regimes = detect_regimes(candles)
    assert len(regimes) == 700
    assert regimes[0] == "unknown"  # warming up: no confirmed regime yet
    assert set(regimes) <= {"bull", "bear", "neutral", "high_volatility", "unknown"}
    assert set(regimes) - {"unknown"}
    shorter = detect_regimes(candles.iloc[:500])
    assert list(shorter) == list(regimes[:500])  # no look-ahead: later candles change nothing before them
    index = pd.to_datetime(candles["open_time"].iloc[-300:], unit="ms", utc=True)
    aligned = regimes_for(candles, pd.DatetimeIndex(index))
    assert list(aligned) == list(regimes[399:699])  # each bar carries the regime of the close before it


def _png_is_not_blank(path: Path) -> None:
    import matplotlib.image

    pixels = matplotlib.image.imread(path)
    assert pixels.shape[0] > 300
    assert pixels.shape[1] > 300
    assert float(np.std(pixels[..., :3])) > 0.05  # lines and text, not one flat colour


def test_html_and_png_reports_show_strategies_beside_benchmarks(tmp_path: Path) -> None:
    closes = [100, 104, 99, 108, 111, 107, 115, 118]
    a = result([10_000, 10_100, 9_950, 10_300, 10_500, 10_400, 10_800, 10_900], starting=10_000,
               trades=[trade(400, at=1), trade(-50, at=4), trade(350, at=6, closed=False)],
               position=[0, 1, 1, 0, 1, 1, 1, 1], closes=closes, params={"fast": 5, "slow": 30})
    b = result([10_000] * 8, starting=10_000, closes=closes)
    hold = buy_and_hold(a.closes, 10_000, 0.001)
    other = pd.Series(np.linspace(50, 60, 8), index=a.closes.index)
    basket = equal_weight({"A": a.closes, "B": other}, 10_000, 0.001)
    section = Section("extra", pd.DataFrame({"share": [0.25]}, index=["bull"]), "a note")
    html_path = write_html([a, b], tmp_path / "out" / "report.html", benchmarks=[hold, basket],
                           title="demo <report>", sections=[section], notes=["costs: 0.1 %"])
    page = html_path.read_text()
    assert "demo &lt;report&gt;" in page
    assert not re.search(r"<script[^>]+src=", page)  # plotly.js is inlined: no network needed
    assert "Plotly.newPlot" in page
    for label in ("sma_cross(fast=5)", "sma_cross", "buy and hold", "equal-weight basket (2)"):
        assert label in page
    assert "max_drawdown" in page
    assert "trades of sma_cross(fast=5): 3" in page
    assert "25.00 %" in page
    png = write_png([a, b], tmp_path / "report.png", benchmarks=[hold, basket])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    _png_is_not_blank(png)
    curve = Curve("out of sample", a.equity, 10_000.0, {"sharpe": 1.0})
    assert "out of sample" in write_html(curve, tmp_path / "curve.html").read_text()
    with pytest.raises(ValueError, match="nothing to report"):
        write_png([], tmp_path / "none.png")
