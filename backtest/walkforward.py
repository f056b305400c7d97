"""Walk-forward testing: train/test windows, segments of a backtest, and the stitched out-of-sample curve.

Windows are bar positions, half-open `[start, end)`. Rolling windows slide the train window by
`step` bars (default: the test length); anchored windows keep the train window's start at bar 0
and grow it. A test window always begins where its train window ends, so no bar is in both, and
consecutive test windows never overlap (`step` may not be shorter than the test window).

A segment is a backtest's performance on bars `[start, end)` only. Its run starts `warmup` bars
earlier so the strategy's indicators are warm at `start` (those bars are before the segment and
never counted); the segment's equity is rebased on the mark just before `start`, its trades are
the ones entered inside it. A position opened during the warm-up and still held at `start` is
carried in: its P/L from `start` on counts (the decision used only earlier data), its entry does
not count as a segment trade.

`walk_forward` chooses parameters on each train window (any `choose` function: the optimiser,
a grid, a fixed set) and evaluates them on the next test window; the stitched out-of-sample curve
compounds the test segments' bar returns only, from the starting cash.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd

from backtest.metrics import compute_metrics, json_safe, returns_of


@dataclass(frozen=True)
class Window:
    """One fold: train on bars [train_start, train_end), test on [test_start, test_end)."""

    index: int
    train_start: int
    train_end: int
    test_start: int
    test_end: int

    def to_dict(self) -> dict[str, int]:
        return {"index": self.index, "train_start": self.train_start, "train_end": self.train_end,
                "test_start": self.test_start, "test_end": self.test_end}


def walk_forward_windows(bars: int, train_bars: int, test_bars: int, *, anchored: bool = False,
                         step: int | None = None) -> list[Window]:
    """The folds that fit in `bars` bars (whole test windows only); ValueError if none fits."""
    step = test_bars if step is None else step
    for name, value in (("train_bars", train_bars), ("test_bars", test_bars), ("step", step)):
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
    if step < test_bars:
        raise ValueError(f"step ({step}) must be at least test_bars ({test_bars}) so test windows never "
                         "overlap")
    windows = []
    offset = 0
    while offset + train_bars + test_bars <= bars:
        train_end = offset + train_bars
        windows.append(Window(len(windows), 0 if anchored else offset, train_end, train_end,
                              train_end + test_bars))
        offset += step
    if not windows:
        raise ValueError(f"{bars} bars hold no walk-forward window of {train_bars} train + {test_bars} test "
                         "bars; use more data or shorter windows")
    return windows


@dataclass(frozen=True)
class Segment:
    """A backtest's performance on a span of bars, rebased on the equity just before it."""

    equity: pd.Series
    starting: float
    trades: list[Any]
    position: pd.Series
    fees: float
    closes: pd.Series

    def metrics(self) -> dict[str, float | int]:
        return compute_metrics(self.equity, starting_cash=self.starting, trades=self.trades,
                               position=self.position, fees_paid=self.fees)


def segment_of(result: Any, bars: int, first_open_time: int) -> Segment:
    """The last `bars` bars of `result` (its run may have begun earlier to warm up), trades entered at
    or after `first_open_time` (UTC ms, the open of the segment's first bar)."""
    equity = result.equity.astype(float)
    if bars > len(equity):
        raise ValueError(f"the run has {len(equity)} bars, fewer than the segment's {bars}")
    before = len(equity) - bars
    starting = float(equity.iloc[before - 1]) if before > 0 else float(result.starting_cash)
    trades = [t for t in result.trades if t.entry_time >= first_open_time]
    fees = float(sum((t.fees for t in trades), Decimal(0)))
    return Segment(equity.iloc[before:], starting, trades, result.position.iloc[before:].astype(float), fees,
                   result.closes.iloc[before:].astype(float))


def stitch(segments: Sequence[Segment], starting: float) -> Segment:
    """One curve from consecutive, non-overlapping segments: their bar returns compounded from `starting`."""
    if not segments:
        raise ValueError("nothing to stitch: no segments")
    returns = pd.concat([returns_of(s.equity, s.starting) for s in segments])
    if not returns.index.is_monotonic_increasing or returns.index.has_duplicates:
        raise ValueError("segments overlap or are out of order")
    equity = starting * (1.0 + returns).cumprod()
    return Segment(equity, starting, [t for s in segments for t in s.trades],
                   pd.concat([s.position for s in segments]), sum(s.fees for s in segments),
                   pd.concat([s.closes for s in segments]))


@dataclass(frozen=True)
class Fold:
    """One window: the parameters chosen on its train window and how they did on both windows."""

    window: Window
    params: dict[str, Any]
    train: Segment
    test: Segment
    detail: Any = None  # whatever `choose` returned beside the parameters (e.g. the candidates)

    def to_dict(self) -> dict[str, Any]:
        return json_safe({
            "window": self.window.to_dict(), "params": self.params,
            "train_start": str(self.train.equity.index[0]), "train_end": str(self.train.equity.index[-1]),
            "test_start": str(self.test.equity.index[0]), "test_end": str(self.test.equity.index[-1]),
            "in_sample": self.train.metrics(), "out_of_sample": self.test.metrics(),
        })


@dataclass(frozen=True)
class WalkForwardResult:
    """Every fold, the stitched out-of-sample curve and the in-sample figures beside it."""

    folds: list[Fold]
    out_of_sample: Segment
    starting: float
    summary_keys: tuple[str, ...] = field(default=("total_return", "sharpe", "max_drawdown", "trades"))

    def in_sample_mean(self) -> dict[str, float]:
        """Each metric averaged over the folds' train windows (they may overlap, so no stitching)."""
        return _mean([fold.train.metrics() for fold in self.folds])

    def out_of_sample_mean(self) -> dict[str, float]:
        return _mean([fold.test.metrics() for fold in self.folds])

    def to_dict(self) -> dict[str, Any]:
        return json_safe({
            "folds": [fold.to_dict() for fold in self.folds],
            "out_of_sample": self.out_of_sample.metrics(),
            "out_of_sample_mean": self.out_of_sample_mean(), "in_sample_mean": self.in_sample_mean(),
        })


def _mean(rows: list[dict[str, float | int]]) -> dict[str, float]:
    keys = rows[0].keys() if rows else ()
    return {key: float(np.mean([float(row[key]) for row in rows])) for key in keys}


Evaluate = Callable[[Mapping[str, Any], int, int], Segment]  # (params, start bar, end bar) -> segment
Choose = Callable[[Window], tuple[Mapping[str, Any], Any]]  # train window -> (params, detail)


def walk_forward(windows: Sequence[Window], choose: Choose, evaluate: Evaluate, *, starting: float,
                 progress: Callable[[Window], None] | None = None) -> WalkForwardResult:
    """Choose on each train window, evaluate on its test window, stitch the test segments."""
    folds = []
    for window in windows:
        params, detail = choose(window)
        train = evaluate(params, window.train_start, window.train_end)
        test = evaluate(params, window.test_start, window.test_end)
        folds.append(Fold(window, dict(params), train, test, detail))
        if progress is not None:
            progress(window)
    return WalkForwardResult(folds, stitch([fold.test for fold in folds], starting), starting)
