"""The strategy optimiser: TPE (optuna) or a genetic algorithm over a strategy's declared space,
every candidate scored walk-forward.

Search (`search`) is pure: a space of `Param`s, a scoring function and a seed in, the scored
candidates out, in the order they were tried; the same seed gives the same candidates.
- `tpe`: optuna's TPESampler (seeded), the strategy's defaults enqueued as the first trial;
- `ga`: a genetic algorithm of our own: the defaults plus random individuals, tournament
  selection (3), uniform crossover, Gaussian mutation of numbers (10 % of the range) and flips of
  booleans, one elite carried over; a `random.Random(seed)` drives every choice. A parameter set
  seen before is not run again, but counts as a trial, so the budget is always `trials`.

The objective (`Objective`, from config `optimizer`) is a metric to maximise (or minimise, for
metrics where lower is better) with a max-drawdown limit and a minimum number of trades: a
candidate that breaks a limit is infeasible and scores below every feasible one
(`INFEASIBLE - violation`); invalid parameter sets (e.g. fast >= slow) score `INVALID`.

Walk-forward (`optimize_walk_forward`): for each window, the search scores candidates on the
train window (in sample) and every candidate is also scored on the next test window (out of
sample), so the report shows how in-sample scores carried over; the window's winner is the best
train score. The winners' test segments are stitched into the out-of-sample curve, whose score
is the run's honest score; the recommended parameters are the last window's winner (chosen on
the most recent data).
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from backtest.metrics import HIGHER_IS_BETTER, json_safe
from backtest.runner import Runner, strategy_class
from backtest.walkforward import Segment, WalkForwardResult, Window, walk_forward
from strategies.base import Param, StrategyConfigError, make_params

INFEASIBLE = -1e6
INVALID = -1e9
OBJECTIVES = ("sharpe", "sortino", "calmar", "total_return", "cagr", "profit_factor", "win_rate",
              "final_equity", "max_drawdown", "volatility")
Method = Literal["tpe", "ga"]


@dataclass(frozen=True)
class Objective:
    """What a candidate is scored by: `metric` (after fees), with limits that make it infeasible."""

    metric: str = "sharpe"
    max_drawdown: float | None = 0.3
    min_trades: int = 0

    def __post_init__(self) -> None:
        if self.metric not in OBJECTIVES:
            raise ValueError(f"objective {self.metric!r} is not one of {', '.join(OBJECTIVES)}")

    def score(self, metrics: Mapping[str, float | int]) -> tuple[float, bool]:
        """(score, feasible): the metric signed so higher is better; limits broken -> below INFEASIBLE."""
        value = float(metrics[self.metric])
        if math.isnan(value):
            value = -math.inf
        value = value if HIGHER_IS_BETTER.get(self.metric, True) else -value
        value = max(min(value, 1e5), -1e5)  # an infinite ratio (no losing bar) must not swamp the ranking
        violation = 0.0
        drawdown = float(metrics["max_drawdown"])
        if self.max_drawdown is not None and drawdown > self.max_drawdown:
            violation += drawdown - self.max_drawdown
        trades = int(metrics.get("trades", 0)) if self.min_trades else 0
        if trades < self.min_trades:
            violation += (self.min_trades - trades) / max(self.min_trades, 1)
        return (value, True) if violation == 0 else (INFEASIBLE - violation, False)


@dataclass(frozen=True)
class Candidate:
    """One tried parameter set: its score, whether it met the limits, and what it measured."""

    trial: int
    params: dict[str, Any]
    score: float
    feasible: bool
    metrics: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    test_score: float | None = None
    test_metrics: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return json_safe({
            "trial": self.trial, "params": self.params, "score": self.score, "feasible": self.feasible,
            "metrics": self.metrics, "error": self.error, "test_score": self.test_score,
            "test_metrics": self.test_metrics,
        })


Score = Callable[[dict[str, Any]], Candidate]  # params -> scored candidate (trial filled in by search)


def narrow(space: Sequence[Param], bounds: Mapping[str, tuple[float, float]]) -> tuple[Param, ...]:
    """`space` with some numeric parameters' bounds narrowed (must stay inside the declared ones)."""
    by_name = {param.name: param for param in space}
    unknown = sorted(set(bounds) - set(by_name))
    if unknown:
        raise ValueError(f"unknown parameter(s) {', '.join(unknown)}; the space has {', '.join(by_name)}")
    out = []
    for param in space:
        if param.name not in bounds:
            out.append(param)
            continue
        low, high = bounds[param.name]
        if param.kind == "bool":
            raise ValueError(f"{param.name} is a boolean: it has no bounds to narrow")
        assert param.low is not None
        assert param.high is not None
        if not param.low <= low <= high <= param.high:
            raise ValueError(f"{param.name}={low:g}:{high:g} must lie within its declared bounds "
                             f"[{param.low:g}, {param.high:g}] with low <= high")
        out.append(replace(param, low=float(low), high=float(high)))
    return tuple(out)


def _clip(param: Param, value: Any) -> Any:
    if param.kind == "bool":
        return bool(value)
    assert param.low is not None
    assert param.high is not None
    if param.kind == "int":
        return int(min(max(round(value), math.ceil(param.low)), math.floor(param.high)))
    return float(min(max(value, param.low), param.high))


def _defaults(space: Sequence[Param]) -> dict[str, Any]:
    return {param.name: _clip(param, param.default) for param in space}


def _key(params: Mapping[str, Any]) -> str:
    return json.dumps(params, sort_keys=True)


# ---------------------------------------------------------------- TPE

def tpe_search(space: Sequence[Param], score: Score, *, trials: int, seed: int,
               progress: Callable[[Candidate], None] | None = None) -> list[Candidate]:
    """`trials` candidates proposed by optuna's seeded TPE sampler (the defaults first)."""
    import optuna  # noqa: PLC0415 (heavy: only the TPE method needs it)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    study.enqueue_trial(_defaults(space))
    out: list[Candidate] = []

    def objective(trial: optuna.Trial) -> float:
        params: dict[str, Any] = {}
        for param in space:
            if param.kind == "bool":
                params[param.name] = trial.suggest_categorical(param.name, [False, True])
            elif param.kind == "int":
                assert param.low is not None
                assert param.high is not None
                low, high = math.ceil(param.low), math.floor(param.high)
                params[param.name] = trial.suggest_int(param.name, low, high)
            else:
                assert param.low is not None
                assert param.high is not None
                params[param.name] = trial.suggest_float(param.name, param.low, param.high)
        candidate = replace(score(params), trial=len(out))
        out.append(candidate)
        if progress is not None:
            progress(candidate)
        return candidate.score

    study.optimize(objective, n_trials=trials)
    return out


# ---------------------------------------------------------------- genetic algorithm

def _random_individual(space: Sequence[Param], rng: random.Random) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for param in space:
        if param.kind == "bool":
            params[param.name] = rng.random() < 0.5
        elif param.kind == "int":
            assert param.low is not None
            assert param.high is not None
            params[param.name] = rng.randint(math.ceil(param.low), math.floor(param.high))
        else:
            assert param.low is not None
            assert param.high is not None
            params[param.name] = rng.uniform(param.low, param.high)
    return params


def _mutate(space: Sequence[Param], params: dict[str, Any], rng: random.Random,
            rate: float) -> dict[str, Any]:
    out = dict(params)
    for param in space:
        if rng.random() >= rate:
            continue
        if param.kind == "bool":
            out[param.name] = not out[param.name]
        else:
            assert param.low is not None
            assert param.high is not None
            sigma = max((param.high - param.low) * 0.1, 1.0 if param.kind == "int" else 1e-12)
            out[param.name] = _clip(param, out[param.name] + rng.gauss(0.0, sigma))
    return out


def _crossover(space: Sequence[Param], a: dict[str, Any], b: dict[str, Any],
               rng: random.Random) -> dict[str, Any]:
    return {param.name: (a if rng.random() < 0.5 else b)[param.name] for param in space}


def ga_search(space: Sequence[Param], score: Score, *, trials: int, seed: int, population: int | None = None,
              crossover_rate: float = 0.9,
              progress: Callable[[Candidate], None] | None = None) -> list[Candidate]:
    """`trials` candidates bred by a seeded genetic algorithm (the defaults in the first generation)."""
    rng = random.Random(seed)
    size = population or max(4, min(trials, trials // 5))
    rate = max(1.0 / max(len(space), 1), 0.2)
    seen: dict[str, Candidate] = {}
    out: list[Candidate] = []

    def evaluate(params: dict[str, Any]) -> Candidate:
        key = _key(params)
        known = seen.get(key)
        candidate = replace(known if known is not None else score(params), trial=len(out))
        seen.setdefault(key, candidate)
        out.append(candidate)
        if progress is not None:
            progress(candidate)
        return candidate

    def tournament(pool: list[Candidate]) -> Candidate:
        return max(rng.sample(pool, min(3, len(pool))), key=lambda c: c.score)

    first = [_defaults(space)] + [_random_individual(space, rng) for _ in range(size - 1)]
    generation = [evaluate(params) for params in first[:trials]]
    while len(out) < trials:
        elite = max(generation, key=lambda c: c.score)
        children = [elite]
        while len(children) < size and len(out) < trials:
            a, b = tournament(generation), tournament(generation)
            crossed = rng.random() < crossover_rate
            child = _crossover(space, a.params, b.params, rng) if crossed else dict(a.params)
            children.append(evaluate(_mutate(space, child, rng, rate)))
        generation = children
    return out


def search(space: Sequence[Param], score: Score, *, method: Method, trials: int, seed: int,
           progress: Callable[[Candidate], None] | None = None) -> list[Candidate]:
    """Candidates tried by `method` ("tpe" or "ga"), in order; `best` picks the winner."""
    if trials < 1:
        raise ValueError(f"trials must be at least 1, got {trials}")
    if method == "tpe":
        return tpe_search(space, score, trials=trials, seed=seed, progress=progress)
    if method == "ga":
        return ga_search(space, score, trials=trials, seed=seed, progress=progress)
    raise ValueError(f"method {method!r} is not one of tpe, ga")


def best(candidates: Sequence[Candidate]) -> Candidate:
    """The highest score (the earliest on a tie)."""
    return max(candidates, key=lambda c: (c.score, -c.trial))


# ---------------------------------------------------------------- walk-forward optimisation

@dataclass(frozen=True)
class OptimizeConfig:
    """One optimisation run's settings (cryptiq optimize fills it from config `optimizer` and flags)."""

    strategy: str
    method: Method = "tpe"
    trials: int = 30
    seed: int = 0
    objective: Objective = field(default_factory=Objective)
    bounds: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    warmup: int = 100


@dataclass(frozen=True)
class OptimizationResult:
    """The walk-forward run: every window's candidates and winner, the stitched out-of-sample result."""

    config: OptimizeConfig
    space: tuple[Param, ...]
    walk_forward: WalkForwardResult
    candidates: dict[int, list[Candidate]]  # window index -> candidates in trial order

    @property
    def params(self) -> dict[str, Any]:
        """The recommended parameters: the winner of the last (most recent) train window."""
        return self.walk_forward.folds[-1].params

    @property
    def out_of_sample(self) -> dict[str, float | int]:
        return self.walk_forward.out_of_sample.metrics()

    @property
    def score(self) -> float:
        """The objective of the stitched out-of-sample curve: the run's honest score."""
        return self.config.objective.score(self.out_of_sample)[0]

    def to_dict(self) -> dict[str, Any]:
        c = self.config
        return json_safe({
            "strategy": c.strategy, "method": c.method, "trials": c.trials, "seed": c.seed,
            "objective": {"metric": c.objective.metric, "max_drawdown": c.objective.max_drawdown,
                          "min_trades": c.objective.min_trades},
            "warmup": c.warmup,
            "space": [{"name": p.name, "kind": p.kind, "low": p.low, "high": p.high, "default": p.default}
                      for p in self.space],
            "params": self.params, "score": self.score,
            "walk_forward": self.walk_forward.to_dict(),
            "candidates": {str(window): [cand.to_dict() for cand in cands]
                           for window, cands in self.candidates.items()},
        })


def optimize_walk_forward(runner: Runner, windows: Sequence[Window], config: OptimizeConfig, *,
                          progress: Callable[[Window, Candidate], None] | None = None) -> OptimizationResult:
    """Search on each train window, score every candidate on the test window too, stitch the winners."""
    cls = strategy_class(config.strategy)
    space = narrow(cls.space, config.bounds)
    objective = config.objective
    cache: dict[tuple[str, int, int], Segment] = {}
    candidates: dict[int, list[Candidate]] = {}

    def evaluate(params: Mapping[str, Any], start: int, end: int) -> Segment:
        key = (_key(dict(params)), start, end)
        if key not in cache:
            cache[key] = runner.segment(config.strategy, params, start, end, config.warmup)
        return cache[key]

    def choose(window: Window) -> tuple[dict[str, Any], list[Candidate]]:
        def score(params: dict[str, Any]) -> Candidate:
            try:
                make_params(cls, params)
            except StrategyConfigError as exc:
                return Candidate(-1, params, INVALID, False, error=str(exc))
            train = evaluate(params, window.train_start, window.train_end).metrics()
            test = evaluate(params, window.test_start, window.test_end).metrics()
            value, feasible = objective.score(train)
            return Candidate(-1, params, value, feasible, metrics=dict(train),
                             test_score=objective.score(test)[0], test_metrics=dict(test))

        def report(candidate: Candidate) -> None:
            if progress is not None:
                progress(window, candidate)

        tried = search(space, score, method=config.method, trials=config.trials,
                       seed=config.seed + window.index, progress=report)
        candidates[window.index] = tried
        return best(tried).params, tried

    result = walk_forward(windows, choose, evaluate, starting=float(runner.cash))
    return OptimizationResult(config, space, result, candidates)
