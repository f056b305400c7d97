"""`cryptiq optimize`: search a strategy's parameters walk-forward, store the run, publish its rankings."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cli.compare import (
    CashOption,
    FeeOption,
    SlippageOption,
    cell,
    check_plots,
    costs,
    load_candles,
    monte_carlo_section,
    print_monte_carlo,
    progress_bar,
    timeframe_of,
    write_json,
    write_plots,
)
from cli.main import fail, settings_of

if TYPE_CHECKING:
    from backtest.optimize import OptimizationResult
    from config import Settings
    from topics.backtest import StrategyRanked
    from topics.envelope import Envelope

SUMMARY = (
    "total_return",
    "cagr",
    "sharpe",
    "sortino",
    "max_drawdown",
    "win_rate",
    "profit_factor",
    "exposure",
    "trades",
    "fees_paid",
)


def _bounds(items: list[str]) -> dict[str, tuple[float, float]]:
    out = {}
    for item in items:
        key, sep, span = item.partition("=")
        low, colon, high = span.partition(":")
        try:
            if not sep or not colon:
                raise ValueError(item)
            out[key.strip()] = (float(low), float(high))
        except ValueError:
            raise fail(f"--space {item}: expected key=low:high, e.g. fast=5:50") from None
    return out


def optimize(
    ctx: typer.Context,
    *,
    symbol: Annotated[
        str, typer.Option(help="ccxt symbol, e.g. BTC/USDT (picks the bundled file without --data).")
    ],
    strategy: Annotated[str, typer.Option(help="Registered strategy to optimise, e.g. sma_cross.")],
    data: Annotated[
        Path | None, typer.Option(help="Candle file (default: the bundled 1h candles of --symbol).")
    ] = None,
    bars: Annotated[int | None, typer.Option(help="Use only the last N candles.")] = None,
    method: Annotated[
        str | None, typer.Option(help="tpe (optuna) or ga (default: optimizer.method).")
    ] = None,
    trials: Annotated[
        int | None,
        typer.Option(
            help="Candidates per walk-forward window (default: optimizer.trials).",
            min=1,
        ),
    ] = None,
    objective: Annotated[
        str | None,
        typer.Option(
            help="Metric to optimise after fees, e.g. sharpe (default: optimizer.objective).",
        ),
    ] = None,
    max_drawdown: Annotated[
        float | None,
        typer.Option(
            "--max-drawdown",
            help="Deeper candidates are infeasible, e.g. 0.3; 0: no limit (default: optimizer).",
            min=0.0,
            max=1.0,
        ),
    ] = None,
    min_trades: Annotated[
        int | None,
        typer.Option(
            "--min-trades",
            help="Candidates with fewer trades are infeasible (default: optimizer.min_trades).",
            min=0,
        ),
    ] = None,
    train_bars: Annotated[
        int | None, typer.Option("--train-bars", help="Bars per train window.", min=2)
    ] = None,
    test_bars: Annotated[int | None, typer.Option("--test-bars", help="Bars per test window.", min=2)] = None,
    warmup_bars: Annotated[
        int | None,
        typer.Option(
            "--warmup-bars",
            help="Bars run before each window to warm the indicators, never scored.",
            min=0,
        ),
    ] = None,
    anchored: Annotated[
        bool | None,
        typer.Option(
            "--anchored/--rolling",
            help="Anchored (growing) or rolling train windows (default: optimizer.anchored).",
        ),
    ] = None,
    space: Annotated[
        list[str] | None,
        typer.Option(
            "--space",
            help="Narrow a parameter's search bounds: key=low:high (repeatable).",
        ),
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Search seed (default: optimizer.seed).", min=0)] = None,
    cash: CashOption = None,
    fee: FeeOption = None,
    slippage_bps: SlippageOption = None,
    plot: Annotated[
        list[Path] | None,
        typer.Option(
            "--plot",
            help="Write the out-of-sample report: FILE.html or FILE.png (repeatable).",
        ),
    ] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the whole run as JSON here.")] = None,
    simulations: Annotated[
        int,
        typer.Option(help="Monte Carlo paths of the out-of-sample result (0: none; --seed seeds it).", min=0),
    ] = 0,
    risk: Annotated[
        bool,
        typer.Option(
            "--risk",
            help="Size every intent with the configured risk engine (`risk.*`), as the live risk agent does, "
            "instead of passing sizes through (all in when the strategy gives none).",
        ),
    ] = False,
    store: Annotated[
        bool,
        typer.Option(
            "--store/--no-store",
            help="Store the run in Postgres and publish its rankings (needs `cryptiq infra up`).",
        ),
    ] = True,
) -> None:
    """Optimise a strategy's parameters walk-forward, with TPE or a genetic algorithm.

    The candles are cut into train/test windows. On each train window the search tries --trials
    parameter sets from the strategy's declared space, scored by the objective after fees (a set
    deeper than --max-drawdown is infeasible); every candidate is also scored on the following
    test window. Each window's winner (best train score) runs on its test window, and those test
    windows stitched together are the out-of-sample result, shown beside the in-sample one. The
    recommended parameters are the last window's winner. The run and every candidate are stored in
    Postgres and the out-of-sample scores, overall and per market regime, are published on
    `strategies.rankings` for the StrategySelector (--no-store: neither).
    """
    from backtest.optimize import Objective, OptimizeConfig, narrow, optimize_walk_forward
    from backtest.runner import Runner, strategy_class
    from backtest.walkforward import walk_forward_windows
    from config.errors import ConfigError

    settings = settings_of(ctx)
    conf = settings.optimizer
    plots = list(plot or [])
    check_plots(plots)
    chosen_method = method or conf.method
    if chosen_method not in ("tpe", "ga"):
        raise fail(f"--method {chosen_method}: use tpe or ga")
    try:
        strategy_class(strategy)
        limit = conf.max_drawdown if max_drawdown is None else (max_drawdown or None)
        goal = Objective(
            objective or conf.objective, limit, conf.min_trades if min_trades is None else min_trades
        )
    except (ValueError, ConfigError) as exc:
        raise fail(str(exc)) from None
    start_cash, rate, slip = costs(settings.paper, cash, fee, slippage_bps)
    candles, _ = load_candles(symbol, data, bars)
    windows_conf = {
        "train_bars": train_bars or conf.train_bars,
        "test_bars": test_bars or conf.test_bars,
        "anchored": conf.anchored if anchored is None else anchored,
        "risk_sizing": risk,  # not a window setting, but it changes every result: part of the run's id
    }
    try:
        windows = walk_forward_windows(
            len(candles),
            windows_conf["train_bars"],
            windows_conf["test_bars"],
            anchored=windows_conf["anchored"],
        )
        config = OptimizeConfig(
            strategy,
            chosen_method,
            trials or conf.trials,  # type: ignore[arg-type]
            conf.seed if seed is None else seed,
            goal,
            _bounds(list(space or [])),
            conf.warmup_bars if warmup_bars is None else warmup_bars,
        )
        narrow(strategy_class(strategy).space, config.bounds)
    except ValueError as exc:
        raise fail(str(exc)) from None
    endpoints = None
    if store:
        import infra

        endpoints = infra.endpoints(settings)  # before the work: say at once if the servers are down
    runner = Runner(candles, symbol, start_cash, rate, slip, options={"risk": settings.risk} if risk else {})
    with progress_bar() as progress:
        task = progress.add_task(f"{strategy} {chosen_method}", total=len(windows) * config.trials)
        result = optimize_walk_forward(
            runner, windows, config, progress=lambda window, candidate: progress.advance(task)
        )
    _print(result)
    bands = _monte_carlo(result, simulations, config.seed)
    payload = _finish(result, candles, symbol, windows_conf, plots, start_cash, rate, slip, bands)
    if json_out is not None:
        write_json(json_out, payload["json"])
    if store and endpoints is not None:
        asyncio.run(
            _store_and_publish(settings, endpoints, payload["row"], payload["candidates"], payload["events"])
        )
        typer.echo(
            f"stored run {payload['row']['id']} and published {len(payload['events'])} rankings "
            "on strategies.rankings"
        )


def _monte_carlo(result: OptimizationResult, simulations: int, seed: int) -> dict[str, Any]:
    """Monte Carlo bands of the stitched out-of-sample result, printed ({} when simulations is 0)."""
    from backtest.montecarlo import monte_carlo

    if not simulations:
        return {}
    oos = result.walk_forward.out_of_sample
    bands = {"out of sample": monte_carlo(oos, simulations=simulations, seed=seed)}
    print_monte_carlo(bands)
    return bands


def _finish(
    result: OptimizationResult,
    candles: Any,
    symbol: str,
    windows_conf: dict[str, Any],
    plots: list[Path],
    cash: Any,
    fee: Any,
    slippage: Any,
    bands: dict[str, Any],
) -> dict[str, Any]:
    """Regimes, report files, the stored rows and the ranking events of a finished run."""
    import pandas as pd

    from backtest.benchmarks import buy_and_hold
    from backtest.compare import regimes_for
    from backtest.rankings import DataSpan, candidate_rows, oos_regimes, ranking_events, run_row, run_settings
    from backtest.report import Curve, Section
    from topics.market import timeframe_ms

    timeframe = timeframe_of(candles)
    span = DataSpan(
        "binance",
        symbol,
        timeframe,
        int(candles["open_time"].iloc[0]),
        int(candles["open_time"].iloc[-1]) + timeframe_ms(timeframe),
        len(candles),
        str(cash),
        str(fee),
        str(slippage),
    )
    index = pd.DatetimeIndex(pd.to_datetime(candles["open_time"], unit="ms", utc=True))
    regimes = oos_regimes(result, regimes_for(candles, index))
    settings = run_settings(result, windows_conf)
    row = run_row(result, span, settings, regimes)
    events = ranking_events(result, span, settings, regimes)
    _print_regimes(regimes)
    oos = result.walk_forward.out_of_sample
    if plots:
        closes = oos.closes
        bench = buy_and_hold(closes, oos.starting, fee, name=f"buy and hold {symbol} (test windows)")
        folds = pd.DataFrame(
            [
                {
                    "train": f"{f.train.equity.index[0]:%Y-%m-%d} .. {f.train.equity.index[-1]:%Y-%m-%d}",
                    "test": f"{f.test.equity.index[0]:%Y-%m-%d} .. {f.test.equity.index[-1]:%Y-%m-%d}",
                    "params": ", ".join(f"{k}={v}" for k, v in f.params.items()),
                    "in-sample sharpe": f.train.metrics()["sharpe"],
                    "out-of-sample sharpe": f.test.metrics()["sharpe"],
                    "out-of-sample return": f.test.metrics()["total_return"],
                }
                for f in result.walk_forward.folds
            ],
            index=[f.window.index for f in result.walk_forward.folds],
        )
        sections = [
            Section(
                "walk-forward windows",
                folds,
                "each window's winner, chosen on its train window",
                frozenset({"out-of-sample return"}),
            )
        ]
        if regimes:
            sections.append(
                Section(
                    "out of sample by regime",
                    pd.DataFrame.from_dict(regimes, orient="index"),
                    "bars entered in each regime",
                    frozenset({"total_return", "cagr", "volatility", "max_drawdown", "exposure", "share"}),
                )
            )
        section = monte_carlo_section(bands)
        if section is not None:
            sections.append(section)
        curve = Curve(
            f"{result.config.strategy} walk-forward (out of sample)",
            oos.equity,
            oos.starting,
            oos.metrics(),
            oos.trades,
        )
        write_plots(
            plots,
            [curve],
            benchmarks=[bench],
            title=f"{symbol}: {result.config.strategy} optimised "
            f"({result.config.method}), stitched test windows",
            sections=sections,
            notes=[
                f"recommended parameters: {result.params}; score ({result.config.objective.metric}, "
                f"out of sample): {result.score:.4f}"
            ],
        )
    payload = result.to_dict()
    payload.update(run_id=row["id"], data=span.to_dict(), regimes=regimes,
                   monte_carlo={label: {kind: band.to_dict() for kind, band in both.items()}
                                for label, both in bands.items()})
    return {"row": row, "candidates": candidate_rows(result), "events": events, "json": payload}


async def _store_and_publish(
    settings: Settings,
    endpoints: Any,
    row: dict[str, Any],
    candidates: list[dict[str, Any]],
    events: list[Envelope[StrategyRanked]],
) -> None:
    from aiokafka import AIOKafkaProducer

    import infra
    from memory.database import create_engine
    from memory.migrations import upgrade
    from memory.optimizer_runs import OptimizerCandidate, OptimizerRun, OptimizerRunStore
    from topics.admin import ensure_topics
    from topics.registry import STRATEGIES_RANKINGS, TopicRegistry
    from topics.serialization import encode, headers

    await upgrade(endpoints.postgres_url)
    engine = create_engine(endpoints.postgres_url)
    try:
        await OptimizerRunStore(engine).save(
            OptimizerRun(**row), [OptimizerCandidate(**candidate) for candidate in candidates]
        )
    finally:
        await engine.dispose()
    kwargs = infra.kafka_client_kwargs(settings.kafka, endpoints.kafka_bootstrap)
    await ensure_topics(
        kwargs,
        default_partitions=settings.kafka.default_partitions,
        replication_factor=settings.kafka.replication_factor,
        registry=TopicRegistry((STRATEGIES_RANKINGS,)),
    )
    producer = AIOKafkaProducer(**kwargs, acks="all", linger_ms=5)
    await producer.start()
    try:
        sends = [
            await producer.send(
                STRATEGIES_RANKINGS.name,
                encode(env),
                key=env.key.encode(),
                timestamp_ms=env.ts,
                headers=headers(env),
            )
            for env in events
        ]
        await asyncio.gather(*sends)
    finally:
        await producer.stop()


def _print(result: OptimizationResult) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=160)
    metric = result.config.objective.metric
    folds = Table(
        title=f"walk-forward: {result.config.strategy}, {result.config.method}, {result.config.trials} "
        f"trials per window, objective {metric}"
    )
    for column in (
        "window",
        "train",
        "test",
        "winner",
        f"IS {metric}",
        f"OOS {metric}",
        "OOS return",
        "feasible",
    ):
        folds.add_column(column, justify="left" if column in ("train", "test", "winner") else "right")
    for fold in result.walk_forward.folds:
        train, test = fold.train.metrics(), fold.test.metrics()
        chosen = max(result.candidates[fold.window.index], key=lambda c: (c.score, -c.trial))
        folds.add_row(
            str(fold.window.index),
            f"{fold.train.equity.index[0]:%Y-%m-%d} .. {fold.train.equity.index[-1]:%Y-%m-%d}",
            f"{fold.test.equity.index[0]:%Y-%m-%d} .. {fold.test.equity.index[-1]:%Y-%m-%d}",
            ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in fold.params.items()),
            cell(metric, train[metric]),
            cell(metric, test[metric]),
            cell("total_return", test["total_return"]),
            "yes" if chosen.feasible else "no",
        )
    console.print(folds)
    summary = Table(
        title="in sample (mean of train windows) vs out of sample (stitched test windows)",
        caption=f"recommended: {result.params}; out-of-sample score {cell(metric, result.score)}",
    )
    summary.add_column("")
    for key in SUMMARY:
        summary.add_column(key, justify="right")
    inside, outside = result.walk_forward.in_sample_mean(), result.out_of_sample
    summary.add_row("in sample", *(cell(k, inside[k]) for k in SUMMARY))
    summary.add_row("out of sample", *(cell(k, outside[k]) for k in SUMMARY), style="bold")
    console.print(summary)


def _print_regimes(regimes: dict[str, dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    if not regimes:
        return
    table = Table(title="out of sample by regime (bars entered in it)")
    keys = ("bars", "share", "total_return", "sharpe", "max_drawdown", "exposure")
    table.add_column("regime")
    for key in keys:
        table.add_column(key, justify="right")
    for regime, metrics in regimes.items():
        table.add_row(regime, *(cell(k, metrics[k]) for k in keys))
    Console(width=160).print(table)
