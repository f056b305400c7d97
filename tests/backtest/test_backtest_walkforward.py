"""Walk-forward windows never mix train and test bars; the stitched result uses test windows only."""

from __future__ import annotations

from decimal import Decimal

import pytest
from analytics_data import random_walk_candles, toy_run
from hypothesis import given
from hypothesis import strategies as st

from backtest.runner import Runner
from backtest.walkforward import segment_of, stitch, walk_forward, walk_forward_windows


@pytest.mark.parametrize("anchored", [False, True])
def test_windows_never_overlap_train_with_test_or_tests_with_each_other(anchored: bool) -> None:
    windows = walk_forward_windows(1000, 300, 100, anchored=anchored)
    assert len(windows) == 7
    tested: set[int] = set()
    for w in windows:
        train, test = set(range(w.train_start, w.train_end)), set(range(w.test_start, w.test_end))
        assert not train & test
        assert max(train) < min(test)  # train is strictly before its test
        assert not test & tested
        tested |= test
        assert w.train_start == 0 if anchored else w.train_end - w.train_start == 300
    assert max(tested) < 1000
    with pytest.raises(ValueError, match="no walk-forward window"):
        walk_forward_windows(350, 300, 100)
    with pytest.raises(ValueError, match="never overlap"):
        walk_forward_windows(1000, 300, 100, step=50)


def test_the_stitched_out_of_sample_curve_uses_only_test_windows() -> None:
    candles = random_walk_candles(700, seed=3)
    runner = Runner(candles, "BTC/USDT", Decimal(10_000), Decimal("0.001"), run=toy_run)
    windows = walk_forward_windows(len(candles), 200, 100)
    seen: list[tuple[int, int]] = []

    def evaluate(params: dict, start: int, end: int):  # type: ignore[no-untyped-def]
        seen.append((start, end))
        return runner.segment("sma_cross", params, start, end, warmup=50)

    def choose(window):  # type: ignore[no-untyped-def]
        return {"fast": 5 + window.index, "slow": 30}, None

    result = walk_forward(windows, choose, evaluate, starting=10_000.0)
    oos_index = result.out_of_sample.equity.index
    test_times = set()
    bar_time = candles["open_time"]  # bars are labelled by their open time, as the engine does
    for w in windows:
        test_times |= set(bar_time.iloc[w.test_start : w.test_end])
    stamps = {int(t.value // 1_000_000) for t in oos_index}
    assert stamps == test_times
    assert len(oos_index) == 100 * len(windows)
    assert [f.params["fast"] for f in result.folds] == [5, 6, 7, 8, 9]
    assert seen == [
        span for w in windows for span in ((w.train_start, w.train_end), (w.test_start, w.test_end))
    ]
    # the stitched curve compounds the test segments' returns
    growth = 1.0
    for fold in result.folds:
        growth *= float(fold.test.equity.iloc[-1]) / fold.test.starting
    assert float(result.out_of_sample.equity.iloc[-1]) == pytest.approx(10_000 * growth)
    report = result.to_dict()
    assert set(report) == {"folds", "out_of_sample", "out_of_sample_mean", "in_sample_mean"}
    assert len(report["folds"]) == len(windows)


def test_a_segment_is_rebased_on_the_mark_before_it_and_counts_only_its_trades() -> None:
    candles = random_walk_candles(300, seed=5)
    runner = Runner(candles, "BTC/USDT", Decimal(10_000), Decimal("0.001"), run=toy_run)
    whole = runner.backtest("sma_cross", {"fast": 3, "slow": 8})
    part = segment_of(whole, 100, int(candles["open_time"].iloc[200]))
    assert part.starting == pytest.approx(float(whole.equity.iloc[199]))
    assert len(part.equity) == 100
    assert all(t.entry_time >= candles["open_time"].iloc[200] for t in part.trades)
    assert 0 < len(part.trades) < len(whole.trades)
    with pytest.raises(ValueError, match="overlap"):
        stitch([part, part], 10_000)


@given(bars=st.integers(2, 3000), train=st.integers(1, 800), test=st.integers(1, 400),
       extra=st.integers(0, 200), anchored=st.booleans())
def test_any_windows_keep_train_before_test_and_tests_apart(bars: int, train: int, test: int, extra: int,
                                                            anchored: bool) -> None:
    try:
        windows = walk_forward_windows(bars, train, test, anchored=anchored, step=test + extra)
    except ValueError:
        assert train + test > bars
        return
    previous_end = 0
    for w in windows:
        assert w.train_start < w.train_end == w.test_start < w.test_end <= bars
        assert w.test_end - w.test_start == test
        assert w.test_start >= previous_end  # test windows never overlap
        previous_end = w.test_end
