"""One place that turns (strategy name, parameters, bar span) into a backtest of a fixed candle frame.

Comparison, walk-forward and the optimiser all run many backtests of the same data with the same
costs; `Runner` holds the data and costs once and builds a fresh strategy per run (strategies are
stateful). The engine (`backtest.engine.run_backtest`) is the default; tests may inject another
`run` with the same signature.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pandas as pd

from backtest.walkforward import Segment, segment_of
from strategies import STRATEGIES
from strategies.base import Strategy, StrategyConfigError, make_params

RunBacktest = Callable[..., Any]  # (candles, strategy, *, symbol, cash, fee, slippage_bps) -> BacktestResult


def strategy_class(name: str) -> type[Strategy]:
    """The registered strategy called `name`; StrategyConfigError listing the known ones otherwise."""
    try:
        return STRATEGIES[name]
    except KeyError:
        known = ", ".join(sorted(STRATEGIES))
        raise StrategyConfigError(f"unknown strategy {name!r}; known: {known}") from None


def build_strategy(name: str, params: Mapping[str, object] | None = None) -> Strategy:
    """A fresh strategy instance with checked parameters (StrategyConfigError if they are invalid)."""
    cls = strategy_class(name)
    return cls(make_params(cls, params))


@dataclass(frozen=True)
class Runner:
    """Backtests of one candle frame (`read_candles` output, one symbol) at fixed costs."""

    candles: pd.DataFrame
    symbol: str
    cash: Decimal
    fee: Decimal
    slippage_bps: Decimal = Decimal(0)
    run: RunBacktest | None = None
    options: Mapping[str, Any] = field(default_factory=dict)  # more engine keywords, e.g. risk=RiskConfig

    def _engine(self) -> RunBacktest:
        if self.run is not None:
            return self.run
        from backtest.engine import run_backtest  # noqa: PLC0415 (the execution cores load only to run)

        return run_backtest  # type: ignore[no-any-return]

    @property
    def bars(self) -> int:
        return len(self.candles)

    def backtest(self, strategy: str, params: Mapping[str, object] | None = None, start: int = 0,
                 end: int | None = None) -> Any:
        """The BacktestResult of `strategy(params)` on bars [start, end)."""
        frame = self.candles.iloc[start:end].reset_index(drop=True)
        return self._engine()(frame, build_strategy(strategy, params), symbol=self.symbol, cash=self.cash,
                              fee=self.fee, slippage_bps=self.slippage_bps, **self.options)

    def segment(self, strategy: str, params: Mapping[str, object] | None, start: int, end: int,
                warmup: int = 0) -> Segment:
        """`strategy(params)` on bars [start, end), its run begun `warmup` bars earlier (see walkforward)."""
        result = self.backtest(strategy, params, max(0, start - warmup), end)
        return segment_of(result, end - start, int(self.candles["open_time"].iloc[start]))
