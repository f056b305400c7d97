"""Laddered entries and exits: Fibonacci levels of a swing, a size per level, and a Monte Carlo of the P/L.

A long ladder buys a pullback of an up swing: limit entries at retracements of the swing (the
entry zone, e.g. 0.382 / 0.5 / 0.618), one stop at the retracement where the setup is wrong
(1.0 = the swing's start), and exits at extensions (e.g. 1.272 / 1.618) that each close an equal
share of the position. A short ladder mirrors it on a down swing.

Sizing: the risk budget (equity x risk tolerance) is split equally over the entries, and each
entry's share is capped by fractional Kelly: f* = W - (1 - W) / R with R the level's risk-reward
and W its win rate, given by the caller or measured in the simulation. A level whose Kelly is
not positive gets no size, so the total risk never exceeds the budget.

The simulation bootstraps historical per-candle log returns (drawn with replacement, with the
random generator the caller passes, so a seed reproduces it) into price paths from the current
price over `horizon` candles. On each path entries fill at their limit when the close crosses
them (at the close itself when the ladder starts past them), the stop and targets fill at their
prices when crossed, what is left closes at the horizon, and unfilled entries are cancelled
once a target is reached. Fees are charged on both sides. The win rates it measures and the
P/L distribution it reports come from the same paths: an in-sample estimate, not a forecast.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

import numpy as np

from execution.risk import floor_to_step, kelly_fraction, to_decimal
from indicators.fibonacci import fibonacci_levels

PERCENTILES = (5, 25, 50, 75, 95)
PRICE_STEP = Decimal("0.00000001")
DEFAULT_ENTRIES = (0.382, 0.5, 0.618)
DEFAULT_EXITS = (1.272, 1.618)

LadderSide = Literal["long", "short"]


@dataclass(frozen=True, slots=True)
class Swing:
    """The highest high and lowest low of a window of candles, and where in the window they were."""

    high: float
    low: float
    high_index: int
    low_index: int


def find_swing(high: Sequence[float] | np.ndarray, low: Sequence[float] | np.ndarray, lookback: int) -> Swing:
    """The swing of the last `lookback` candles: only candles up to the latest one, never later ones."""
    highs, lows = np.asarray(high, dtype=np.float64), np.asarray(low, dtype=np.float64)
    if lookback < 2:
        raise ValueError(f"lookback must be at least 2 candles, got {lookback}")
    if len(highs) != len(lows) or len(highs) < lookback:
        raise ValueError(f"need {lookback} candles for the swing, got {len(highs)}")
    start = len(highs) - lookback
    window_high, window_low = highs[start:], lows[start:]
    hi, lo = int(np.argmax(window_high)), int(np.argmin(window_low))
    return Swing(float(window_high[hi]), float(window_low[lo]), start + hi, start + lo)


def log_returns(close: Sequence[float] | np.ndarray) -> np.ndarray:
    """Per-candle log returns of a close series: ln(close[i] / close[i - 1])."""
    closes = np.asarray(close, dtype=np.float64)
    if len(closes) < 2 or not np.all(np.isfinite(closes)) or np.any(closes <= 0):
        raise ValueError("need at least two positive, finite closes for returns")
    return np.diff(np.log(closes))


@dataclass(frozen=True, slots=True)
class LadderSetup:
    """The trade idea: which swing, which side, and which Fibonacci ratios to enter, stop and exit at."""

    side: LadderSide
    swing_high: float
    swing_low: float
    entry_ratios: tuple[float, ...] = DEFAULT_ENTRIES
    exit_ratios: tuple[float, ...] = DEFAULT_EXITS
    stop_ratio: float = 1.0

    def __post_init__(self) -> None:
        if self.side not in ("long", "short"):
            raise ValueError(f"side must be long or short, got {self.side!r}")
        if not (math.isfinite(self.swing_high) and math.isfinite(self.swing_low) and self.swing_low > 0):
            raise ValueError(f"swing prices must be positive and finite: {self.swing_low}, {self.swing_high}")
        if self.swing_high <= self.swing_low:
            raise ValueError(f"swing_high ({self.swing_high}) must be above swing_low ({self.swing_low})")
        if not self.entry_ratios or not self.exit_ratios:
            raise ValueError("a ladder needs at least one entry ratio and one exit ratio")
        if len(set(self.entry_ratios)) != len(self.entry_ratios) or len(set(self.exit_ratios)) != len(
            self.exit_ratios
        ):
            raise ValueError("entry and exit ratios must not repeat")
        if any(not 0 < ratio < self.stop_ratio for ratio in self.entry_ratios):
            raise ValueError(f"entry ratios must lie between 0 and the stop ratio {self.stop_ratio}, "
                             f"got {list(self.entry_ratios)}")
        if any(ratio <= 1 - min(self.entry_ratios) for ratio in self.exit_ratios):
            raise ValueError(f"exit ratios {list(self.exit_ratios)} must reach beyond every entry: above "
                             f"{1 - min(self.entry_ratios):g}")


@dataclass(frozen=True, slots=True)
class LadderLevel:
    """One rung. Entries: size, risk at the stop, R:R to the blended target, win rate, Kelly.
    Exits: the quantity closed there (of a fully filled ladder) and R:R from the average entry."""

    kind: Literal["entry", "exit"]
    ratio: float
    price: Decimal
    size: Decimal
    risk: Decimal
    risk_reward: float
    fill_probability: float
    win_rate: float | None = None
    kelly: float | None = None


@dataclass(frozen=True, slots=True)
class MonteCarloResult:
    """The simulated P/L of the whole ladder, in the quote currency."""

    simulations: int
    horizon: int
    percentiles: dict[int, float]
    probability_of_loss: float
    mean: float
    fill_probability: float  # share of paths where at least one entry filled


@dataclass(frozen=True, slots=True)
class Ladder:
    """A complete plan: levels, the stop, and the simulated outcome."""

    setup: LadderSetup
    price: Decimal
    equity: Decimal
    risk_budget: Decimal
    stop: Decimal
    entries: tuple[LadderLevel, ...]
    exits: tuple[LadderLevel, ...]
    monte_carlo: MonteCarloResult
    notes: tuple[str, ...]

    @property
    def total_risk(self) -> Decimal:
        return sum((level.risk for level in self.entries), Decimal(0))

    @property
    def total_size(self) -> Decimal:
        return sum((level.size for level in self.entries), Decimal(0))


def _price(value: float) -> Decimal:
    return Decimal(repr(value)).quantize(PRICE_STEP)


@dataclass(frozen=True, slots=True)
class _Paths:
    """Per path: whether each entry filled and at what price, and the average exit price of a unit."""

    filled: np.ndarray  # (paths, entries) bool
    fill_price: np.ndarray  # (paths, entries)
    exit_price: np.ndarray  # (paths,) average exit price of every filled unit
    reached: np.ndarray  # (paths, exits) bool: target j filled


def _simulate(
    side: LadderSide, price: float, orders: tuple[np.ndarray, float, np.ndarray], *,
    returns: np.ndarray, rng: np.random.Generator, simulations: int, horizon: int,
) -> _Paths:
    """Walk bootstrapped price paths through the ladder's orders (see the module docstring)."""
    entries, stop, targets = orders
    d = 1.0 if side == "long" else -1.0
    draws = returns[rng.integers(0, len(returns), size=(simulations, horizon))]
    closes = np.concatenate(
        [np.full((simulations, 1), price), price * np.exp(np.cumsum(draws, axis=1))], axis=1
    )
    share = 1.0 / len(targets)
    filled = np.zeros((simulations, len(entries)), dtype=bool)
    fill_price = np.zeros((simulations, len(entries)))
    reached = np.zeros((simulations, len(targets)), dtype=bool)
    exit_value = np.zeros(simulations)  # sum of share x price of the exits done so far
    remaining = np.ones(simulations)  # share of the position not exited yet
    closed = np.zeros(simulations, dtype=bool)
    for t in range(horizon + 1):
        close = closes[:, t]
        open_ = ~closed
        taking = open_ & ~reached[:, 0]  # entries stay until the first target is reached
        for i, level in enumerate(entries):
            new = taking & ~filled[:, i] & (d * (close - level) <= 0)
            filled[new, i] = True
            fill_price[new, i] = close[new] if t == 0 else level
        holding = open_ & filled.any(axis=1)
        stopped = holding & (d * (close - stop) <= 0)
        exit_value[stopped] += remaining[stopped] * stop
        remaining[stopped] = 0.0
        for j, target in enumerate(targets):
            new = holding & ~stopped & ~reached[:, j] & (d * (close - target) >= 0)
            reached[new, j] = True
            exit_value[new] += share * target
            remaining[new] -= share
        missed = open_ & ~holding & (d * (close - targets[0]) >= 0)  # ran away before any entry filled
        closed |= stopped | missed | (holding & (remaining <= 1e-12))
    last = closes[:, -1]
    exit_value += np.where(remaining > 1e-12, remaining * last, 0.0)
    return _Paths(filled, fill_price, exit_value, reached)


def _level_stats(unit_pnl: np.ndarray, filled: np.ndarray) -> tuple[float | None, float | None]:
    """(win rate, payoff) of one entry over the paths where it filled; payoff None if it never lost."""
    outcomes = unit_pnl[filled]
    if outcomes.size == 0:
        return None, None
    wins, losses = outcomes[outcomes > 0], outcomes[outcomes <= 0]
    win_rate = wins.size / outcomes.size
    if losses.size == 0 or wins.size == 0 or losses.mean() == 0:
        return win_rate, None
    return win_rate, float(wins.mean() / -losses.mean())


@dataclass(frozen=True, slots=True)
class LadderRisk:
    """How much to put at risk and how to size and simulate it.

    `risk` is the tolerance (0.01 = 1 % of `equity` lost if every entry fills and the stop is
    hit); `kelly_multiplier` the share of full Kelly that caps each level; `win_rate`, when
    given, replaces the simulated win rate of every level (with the level's R:R as the payoff);
    `step` is the venue's quantity step; `fee` a fraction per side.
    """

    equity: Decimal
    risk: Decimal
    kelly_multiplier: Decimal = Decimal("0.5")
    win_rate: float | None = None
    simulations: int = 10_000
    horizon: int = 168
    fee: float = 0.001
    step: Decimal = Decimal("0.00000001")

    def __post_init__(self) -> None:
        for name in ("equity", "risk", "kelly_multiplier", "step"):
            object.__setattr__(self, name, to_decimal(name, getattr(self, name)))
        if self.equity <= 0:
            raise ValueError(f"equity must be positive, got {self.equity}")
        if not 0 < self.risk <= 1:
            raise ValueError(f"risk must be above 0 and at most 1 (100%), got {self.risk}")
        if not 0 < self.kelly_multiplier <= 1:
            raise ValueError(f"kelly_multiplier must be above 0 and at most 1, got {self.kelly_multiplier}")
        if self.simulations < 1 or self.horizon < 1:
            raise ValueError(f"simulations and horizon must be at least 1, got {self.simulations} and "
                             f"{self.horizon}")
        if self.win_rate is not None and not 0 <= self.win_rate <= 1:
            raise ValueError(f"win_rate must be between 0 and 1, got {self.win_rate}")
        if not 0 <= self.fee < 0.1:
            raise ValueError(f"fee must be a fraction between 0 and 0.1, got {self.fee}")
        if self.step <= 0:
            raise ValueError(f"step must be positive, got {self.step}")

    @property
    def budget(self) -> Decimal:
        return self.equity * self.risk


def _kelly(win: float | None, payoff: float | None) -> Decimal | None:
    """Full Kelly of a level; None without a win rate; the win rate itself when it never lost or won."""
    if win is None:
        return None
    if payoff is None:
        return Decimal(str(win))
    return kelly_fraction(win, payoff)


def build_ladder(
    setup: LadderSetup, params: LadderRisk, *, price: float, returns: Sequence[float] | np.ndarray,
    rng: np.random.Generator,
) -> Ladder:
    """The ladder of `setup` at the current `price`, sized by `params`, simulated from `returns`.

    `returns` are historical per-candle log returns to bootstrap (`log_returns`); `rng` is the
    only source of randomness, so the same generator state gives the same ladder.
    """
    if not (math.isfinite(price) and price > 0):
        raise ValueError(f"price must be a positive number, got {price!r}")
    history = np.asarray(returns, dtype=np.float64)
    if history.size < 2 or not np.all(np.isfinite(history)):
        raise ValueError("need at least two finite historical returns to bootstrap")
    d = 1.0 if setup.side == "long" else -1.0
    fib = fibonacci_levels(setup.swing_high, setup.swing_low, "up" if d > 0 else "down",
                           retracements=(*setup.entry_ratios, setup.stop_ratio), extensions=setup.exit_ratios)
    entry_prices = np.array([fib.retracements[r] for r in setup.entry_ratios])
    stop = fib.retracements[setup.stop_ratio]
    if d * (price - stop) <= 0:
        raise ValueError(f"the price {price:g} is already past the stop {stop:g}: the setup is void")
    exit_ratios = tuple(sorted(setup.exit_ratios))  # nearest target first
    targets = np.array([fib.extensions[r] for r in exit_ratios])
    paths = _simulate(setup.side, price, (entry_prices, stop, targets), returns=history, rng=rng,
                      simulations=params.simulations, horizon=params.horizon)
    exit_price = paths.exit_price[:, None]
    unit_pnl = d * (exit_price - paths.fill_price) - params.fee * (exit_price + paths.fill_price)

    notes = [f"entry {r:g} is already past the price {price:g}: it fills at once, at the market"
             for r, level in zip(setup.entry_ratios, entry_prices, strict=True) if d * (price - level) <= 0]
    entries = []
    for i, ratio in enumerate(setup.entry_ratios):
        level, note = _entry(ratio, float(entry_prices[i]), stop=stop, blended_target=float(targets.mean()),
                             unit_pnl=unit_pnl[:, i], filled=paths.filled[:, i], params=params,
                             count=len(entry_prices), d=d)
        entries.append(level)
        notes += [note] if note else []
    sizes = np.array([float(level.size) for level in entries])
    return Ladder(
        setup, _price(price), params.equity, params.budget, _price(stop), tuple(entries),
        _exits(exit_ratios, targets, entries=entries, stop=stop, paths=paths, step=params.step, d=d),
        _monte_carlo((unit_pnl * paths.filled * sizes).sum(axis=1), paths, params.horizon), tuple(notes),
    )


def _entry(
    ratio: float, level: float, *, stop: float, blended_target: float, unit_pnl: np.ndarray,
    filled: np.ndarray, params: LadderRisk, count: int, d: float,
) -> tuple[LadderLevel, str | None]:
    """One entry rung: an equal share of the budget, capped by fractional Kelly; and a note if it is 0."""
    distance = _price(abs(level - stop))
    rr = d * (blended_target - level) / (d * (level - stop))
    measured_win, measured_payoff = _level_stats(unit_pnl, filled)
    win = params.win_rate if params.win_rate is not None else measured_win
    full = _kelly(win, rr if params.win_rate is not None else measured_payoff)
    capped, note = Decimal(0), None
    if full is None:
        note = f"entry {ratio:g}: never filled in the simulation, so no win rate: size 0"
    elif full <= 0:
        note = f"entry {ratio:g}: Kelly {float(full):.3f} <= 0 (win rate {win:.1%}): no edge, size 0"
    else:
        capped = min(params.budget / count, params.equity * params.kelly_multiplier * full)
    size = floor_to_step(capped / distance, params.step)
    return LadderLevel(
        kind="entry", ratio=ratio, price=_price(level), size=size, risk=size * distance, risk_reward=rr,
        fill_probability=float(filled.mean()), win_rate=win,
        kelly=float(params.kelly_multiplier * full) if full is not None else None,
    ), note


def _exits(
    ratios: tuple[float, ...], targets: np.ndarray, *, entries: list[LadderLevel], stop: float, paths: _Paths,
    step: Decimal, d: float,
) -> tuple[LadderLevel, ...]:
    """Each target closes an equal share; its R:R is measured from the size-weighted average entry."""
    total = sum((level.size for level in entries), Decimal(0))
    weights = [float(level.size) for level in entries] if total > 0 else [1.0] * len(entries)
    average = float(np.average([float(level.price) for level in entries], weights=weights))
    each = floor_to_step(total / len(targets), step)
    return tuple(
        LadderLevel(
            kind="exit", ratio=ratio, price=_price(float(target)), size=each, risk=Decimal(0),
            risk_reward=d * (float(target) - average) / (d * (average - stop)),
            fill_probability=float(paths.reached[:, j].mean()),
        )
        for j, (ratio, target) in enumerate(zip(ratios, targets, strict=True))
    )


def _monte_carlo(pnl: np.ndarray, paths: _Paths, horizon: int) -> MonteCarloResult:
    values = np.percentile(pnl, PERCENTILES)
    return MonteCarloResult(
        simulations=len(pnl), horizon=horizon,
        percentiles={p: float(v) for p, v in zip(PERCENTILES, values, strict=True)},
        probability_of_loss=float((pnl < 0).mean()), mean=float(pnl.mean()),
        fill_probability=float(paths.filled.any(axis=1).mean()),
    )
