"""`cryptiq train ...`: train a model on candle files, evaluate it walk-forward, register a new version."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cli.main import fail, settings_of

if TYPE_CHECKING:
    from agents.technical.model import Report, TrainParams
    from config import Settings
    from memory.model_registry import ModelRecord
    from orchestrator.regime import EvaluationReport as RegimeReport
    from orchestrator.regime import ForestParams, LabelParams

MODEL_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")

app = typer.Typer(no_args_is_help=True, help="Train models and register them for the agents.")


@app.command("technical")
def technical(
    ctx: typer.Context,
    *,
    data: Annotated[
        list[Path],
        typer.Option("--data", help="Candle file (.csv[.gz], .parquet, .feather, .json[l][.gz]); repeat the "
                     "option to pool several symbols."),
    ],
    horizon: Annotated[
        int | None,
        typer.Option(help="Candles ahead the label looks (default: technical.horizon, 24).", min=1),
    ] = None,
    fee: Annotated[
        float | None,
        typer.Option(help="Fee per side as a fraction; buy/sell labels must beat 2 x fee "
                     "(default: technical.fee, 0.001).", min=0.0, max=0.1),
    ] = None,
    folds: Annotated[int, typer.Option(help="Walk-forward test windows.", min=1, max=100)] = 5,
    max_depth: Annotated[int, typer.Option(help="Depth limit of the tree.", min=1, max=30)] = 5,
    min_leaf: Annotated[int, typer.Option(help="Fewest training rows per leaf.", min=1)] = 200,
    symbol: Annotated[
        str | None, typer.Option(help="Symbol to take from files that hold several, e.g. BTC/USDT.")
    ] = None,
    name: Annotated[
        str | None, typer.Option(help="Register under this model name (default: technical.model_name).")
    ] = None,
) -> None:
    """Train the technical agent's buy/sell/hold decision tree and register it as a new version.

    Each candle is labelled by the close `--horizon` candles later: buy above +2 x fee, sell
    below -2 x fee, else hold. Features are the agent's causal indicator features. The tree is
    evaluated walk-forward — trained only on rows whose label was settled before each test
    window, scored on that window — against always answering the training majority class; then
    fitted on every labelled row, written to $CRYPTIQ_HOME/models/ and registered in Postgres
    (the servers must be up: `cryptiq infra up`). The technical agent loads the newest version
    when it starts.
    """
    from agents.technical.model import TrainParams

    settings = settings_of(ctx)
    config = settings.technical
    try:
        params = TrainParams(
            horizon=horizon if horizon is not None else config.horizon,
            fee=fee if fee is not None else config.fee,
            folds=folds, max_depth=max_depth, min_samples_leaf=min_leaf,
        )
    except ValueError as exc:
        raise fail(str(exc)) from None
    model_name = name or config.model_name
    if not MODEL_NAME.fullmatch(model_name):
        raise fail(f"--name {model_name!r}: use letters, digits, '_', '-' or '.'")
    record = _train(settings, data, symbol, params, model_name)
    typer.echo(f"registered {record.name} v{record.version}: {record.path} (sha256 {record.sha256[:16]}...)")


def _train(
    settings: Settings, files: list[Path], symbol: str | None, params: TrainParams, model_name: str,
) -> ModelRecord:
    import infra
    from agents.market_data.files import read_candles
    from agents.technical.model import build_dataset, fit, save_model, walk_forward

    series = []
    for path in files:
        candles = read_candles(path, symbol=symbol)
        if len(candles) <= params.horizon:
            needed = params.horizon + 1
            raise fail(f"{path} holds {len(candles)} valid candles; the horizon alone needs {needed}")
        series.append(candles)
    endpoints = infra.endpoints(settings)  # before the work: say at once if the servers are down
    with _progress() as progress:
        task = progress.add_task("features", total=len(series))
        data = build_dataset(series, params.horizon, params.fee, lambda _: progress.advance(task))
    needed = (params.folds + 1) * params.min_samples_leaf
    if len(data) < needed:
        raise fail(
            f"only {len(data)} labelled rows after warm-up; need {needed} "
            "for the walk-forward windows (more candles, fewer --folds or a smaller --min-leaf)"
        )
    with _progress() as progress:
        task = progress.add_task("walk-forward", total=params.folds + 1)
        report = walk_forward(data, params, lambda _: progress.advance(task))
        progress.update(task, description="final fit")
        model = fit(data, params)
        progress.advance(task)
    path, digest = save_model(model, settings.home.expanduser().resolve() / "models")
    _print(report)
    metrics = report.to_dict()
    described = {**model.params, "data": [str(path_) for path_ in files], "symbol": symbol}
    return asyncio.run(_register(
        endpoints.postgres_url, model_name, path=str(path), sha256=digest, params=described, metrics=metrics,
    ))



@app.command("regime")
def regime(
    ctx: typer.Context,
    *,
    data: Annotated[
        list[Path],
        typer.Option("--data", help="Candle file (.csv[.gz], .parquet, .feather, .json[l][.gz]); repeat the "
                     "option to pool several symbols."),
    ],
    horizon: Annotated[int, typer.Option(help="Candles ahead the label looks.", min=2, max=10_000)] = 24,
    threshold: Annotated[
        float, typer.Option(help="Forward return beyond +/- this is bull / bear.", min=0.0001, max=0.99)
    ] = 0.02,
    folds: Annotated[int, typer.Option(help="Walk-forward test windows.", min=1, max=100)] = 5,
    trees: Annotated[int, typer.Option(help="Trees in the forest.", min=1, max=2000)] = 60,
    max_depth: Annotated[int, typer.Option(help="Depth limit of each tree.", min=1, max=30)] = 8,
    min_leaf: Annotated[int, typer.Option(help="Fewest training rows per leaf.", min=1)] = 100,
    symbol: Annotated[
        str | None, typer.Option(help="Symbol to take from files that hold several, e.g. BTC/USDT.")
    ] = None,
    name: Annotated[str, typer.Option(help="Register under this model name.")] = "regime",
) -> None:
    """Train the MarketConditionDetector's random forest (bull / bear / neutral / high_volatility).

    Labels look `horizon` candles ahead: high_volatility if the realised volatility of those
    candles is above the 90th percentile of the forward volatilities already known, else bull /
    bear if the close moved beyond +/- threshold, else neutral. Features are causal. The forest is
    evaluated walk-forward with purging (a training row's label never reaches into the test
    window) against the rule detector and the training majority class, per class and overall;
    then fitted on every row, written to $CRYPTIQ_HOME/models/ and registered in Postgres (the
    servers must be up: `cryptiq infra up`).
    """
    from orchestrator.regime import ForestParams, LabelParams

    if not MODEL_NAME.fullmatch(name):
        raise fail(f"--name {name!r}: use letters, digits, '_', '-' or '.'")
    try:
        labels = LabelParams(horizon=horizon, threshold=threshold)
    except ValueError as exc:
        raise fail(str(exc)) from None
    forest = ForestParams(n_estimators=trees, max_depth=max_depth, min_samples_leaf=min_leaf)
    record = _train_regime(settings_of(ctx), data, symbol, labels, forest, folds, name)
    typer.echo(f"registered {record.name} v{record.version}: {record.path} (sha256 {record.sha256[:16]}...)")


def _train_regime(
    settings: Settings, files: list[Path], symbol: str | None, labels: LabelParams, params: ForestParams,
    folds: int, model_name: str,
) -> ModelRecord:
    import hashlib
    import os
    import tempfile

    import infra
    from agents.market_data.files import read_candles
    from agents.technical.model import Dataset, walk_forward_splits
    from orchestrator.regime import ForestDetector, build_dataset, evaluate

    series = [read_candles(path, symbol=symbol) for path in files]
    endpoints = infra.endpoints(settings)  # before the work: say at once if the servers are down
    with _progress() as progress:
        task = progress.add_task("features and labels", total=1)
        data = build_dataset(series, labels)
        progress.advance(task)
    needed = (folds + 1) * params.min_samples_leaf
    if len(data) < needed:
        raise fail(f"only {len(data)} labelled rows after warm-up; need {needed} for the walk-forward "
                   "windows (more candles, fewer --folds or a smaller --min-leaf)")
    splits = walk_forward_splits(Dataset(data.times, data.settled, data.features, data.labels), folds)
    with _progress() as progress:
        task = progress.add_task("walk-forward", total=2)
        report = evaluate(data, splits, params)
        progress.advance(task)
        detector = ForestDetector.fit(data, params, labels)
        progress.advance(task)
    payload = detector.dump()
    digest = hashlib.sha256(payload).hexdigest()
    folder = settings.home.expanduser().resolve() / "models"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"regime-{digest[:16]}.joblib"
    with tempfile.NamedTemporaryFile(dir=folder, delete=False, suffix=".tmp") as handle:
        handle.write(payload)
    os.replace(handle.name, path)  # atomic: a reader never sees half a file
    _print_regime(report)
    described = {**detector.params, "folds": folds, "data": [str(file) for file in files], "symbol": symbol}
    return asyncio.run(_register(
        endpoints.postgres_url, model_name, path=str(path), sha256=digest, params=described,
        metrics=report.to_dict(),
    ))


def _print_regime(report: RegimeReport) -> None:
    from rich.console import Console
    from rich.table import Table

    from orchestrator.regime import REGIMES

    counts = ", ".join(f"{label} {count:,}" for label, count in report.class_counts.items())
    table = Table(
        title=f"regime detection, walk-forward out of sample ({report.windows} windows)",
        caption=f"{report.test_rows:,} test rows of {report.rows:,} labelled ({counts}). Per class: the "
        "share of that class's rows answered right (recall). majority: always the training majority",
    )
    table.add_column("detector")
    for column in ("overall", *REGIMES):
        table.add_column(column, justify="right")
    for label, scores in (("forest", report.forest), ("rules", report.rules), ("majority", report.majority)):
        table.add_row(label, f"{scores.accuracy:.3f}", *(f"{scores.per_class[name]:.3f}" for name in REGIMES))
    Console(width=120).print(table)

async def _register(url: str, name: str, **row: Any) -> ModelRecord:
    from memory.database import create_engine
    from memory.migrations import upgrade
    from memory.model_registry import ModelRegistry

    await upgrade(url)
    engine = create_engine(url)
    try:
        return await ModelRegistry(engine).register(name, **row)
    finally:
        await engine.dispose()


def _print(report: Report) -> None:
    from datetime import UTC, datetime

    from rich.console import Console
    from rich.table import Table

    def day(ms: int) -> str:
        return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d")

    counts = ", ".join(f"{label} {count:,}" for label, count in report.class_counts.items())
    table = Table(
        title="walk-forward, out of sample",
        caption=f"{report.rows:,} labelled rows ({counts}). baseline: always the training majority; "
        "best constant: the test window's own majority, in hindsight",
    )
    columns = ("test window", "train rows", "test rows", "accuracy", "baseline", "majority", "best constant")
    for column in columns:
        table.add_column(column, justify="left" if column in ("test window", "majority") else "right")
    for fold in report.folds:
        table.add_row(f"{day(fold.test_start)} .. {day(fold.test_end)}", f"{fold.train_rows:,}",
                      f"{fold.test_rows:,}", f"{fold.accuracy:.3f}", f"{fold.baseline:.3f}", fold.majority,
                      f"{fold.best_constant:.3f}")
    table.add_row("all windows", "", f"{sum(f.test_rows for f in report.folds):,}", f"{report.accuracy:.3f}",
                  f"{report.baseline:.3f}", "", "", style="bold")
    Console(width=120).print(table)


def _progress() -> Any:
    """A progress bar on stderr, so stdout keeps the results; only on a terminal, where someone watches."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, disable=not console.is_terminal,
    )
