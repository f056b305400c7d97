"""`cryptiq backtest`: one strategy on one candle file, through the backtest engine, with a progress bar."""

from __future__ import annotations

import json
import math
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cli.main import fail, settings_of

if TYPE_CHECKING:
    from rich.progress import Progress


def parse_params(text: str | None) -> dict[str, object]:
    """`fast=20,slow=50,on=true` -> {"fast": 20, "slow": 50, "on": True}; ValueError says what is wrong."""
    params: dict[str, object] = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        key, sep, raw = part.partition("=")
        key, raw = key.strip(), raw.strip()
        if not sep or not key or not raw:
            raise ValueError(f"{part.strip()!r} is not key=value (write e.g. fast=20,slow=50)")
        if key in params:
            raise ValueError(f"{key} is given twice")
        params[key] = _value(raw)
    return params


def _value(raw: str) -> object:
    if raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    try:
        return int(raw)
    except ValueError:
        pass
    try:
        number = float(raw)
    except ValueError:
        raise ValueError(f"{raw!r} is not a number or true/false") from None
    if not math.isfinite(number):
        raise ValueError(f"{raw!r} is not a finite number")
    return number


def _decimal(option: str, raw: str, *, low: Decimal, high: Decimal | None = None) -> Decimal:
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise fail(f"{option} {raw}: not a number") from None
    if not value.is_finite() or value < low or (high is not None and value >= high):
        bounds = f"at least {low}" + (f" and below {high}" if high is not None else "")
        raise fail(f"{option} {raw}: must be {bounds}")
    return value


def backtest(
    ctx: typer.Context,
    *,
    data: Annotated[Path, typer.Option("--data", help="Candle file in any format `cryptiq data import` "
                                       "reads.")],
    symbol: Annotated[str, typer.Option("--symbol", help="Instrument, e.g. BTC/USDT (also picks it from a "
                                        "file that holds several).")],
    strategy: Annotated[str, typer.Option("--strategy", help="Registered strategy, e.g. sma_cross.")],
    params: Annotated[str | None, typer.Option("--params", help="Strategy parameters: "
                                               "fast=20,slow=50.")] = None,
    fee: Annotated[str, typer.Option("--fee", help="Fee rate per side (0.001 = 0.1%).")] = "0.001",
    cash: Annotated[str, typer.Option("--cash", help="Starting cash in the quote currency.")] = "100000",
    slippage_bps: Annotated[str, typer.Option("--slippage-bps", help="Slippage of every market fill, in "
                                              "basis points.")] = "0",
    risk: Annotated[bool, typer.Option("--risk", help="Size every intent with the configured risk engine "
                                       "(`risk.*` settings), as the live risk agent does, instead of "
                                       "passing sizes through (all in when the strategy gives "
                                       "none).")] = False,
    engine: Annotated[str, typer.Option("--engine", help="auto (vectorised when the strategy allows it), "
                                        "lean (per-candle hot path), event (every candle a validated "
                                        "event) or vector.")] = "auto",
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the JSON report here.")] = None,
    plot: Annotated[Path | None, typer.Option("--plot", help="Write an HTML report with the equity curve "
                                              "here.")] = None,
) -> None:
    """Backtest a strategy on a candle file: orders fill at the next candle's open, with fees and slippage.

    Prints a one-line summary (final equity, return, trades, fees); `--json` writes the report
    (`final_equity`, `trades` with ISO 8601 UTC times, Decimal amounts as strings).
    """
    from backtest.engine import BacktestError, make_strategy, run_backtest
    from strategies.base import StrategyConfigError

    if engine not in ("auto", "lean", "event", "vector"):
        raise fail(f"--engine {engine}: choose auto, lean, event or vector")
    fee_rate = _decimal("--fee", fee, low=Decimal(0), high=Decimal(1))
    starting = _decimal("--cash", cash, low=Decimal(0))
    if starting == 0:
        raise fail(f"--cash {cash}: must be above 0")
    slippage = _decimal("--slippage-bps", slippage_bps, low=Decimal(0))
    _check_paths(data, json_out, plot)
    try:
        chosen = make_strategy(strategy, parse_params(params))
    except ValueError as exc:  # before StrategyConfigError's parent: parse errors name --params
        raise fail(f"--params {params}: {exc}") from None
    except (BacktestError, StrategyConfigError) as exc:
        raise fail(str(exc)) from None
    settings = settings_of(ctx)  # configures logging: the quality policy logs what it repairs or rejects

    from agents.market_data.files import CandleFileError, read_candles

    try:
        candles = read_candles(data, symbol=symbol)
    except CandleFileError as exc:
        raise fail(str(exc)) from None
    if "symbol" in candles.columns:
        candles = candles.drop(columns="symbol")
    if len(candles) < 2:
        raise fail(f"{data} holds {len(candles)} valid candle(s): a backtest needs at least 2")
    with _progress() as bar:
        task = bar.add_task(f"{chosen.name} on {symbol}", total=len(candles))
        try:
            result = run_backtest(
                candles, chosen, symbol=symbol, cash=starting, fee=fee_rate, slippage_bps=slippage,
                risk=settings.risk if risk else None, mode=engine,  # type: ignore[arg-type]
                progress=lambda done, total: bar.update(task, completed=done),
            )
        except BacktestError as exc:
            raise fail(str(exc)) from None
    report = result.report_json()
    if json_out is not None:
        json_out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    if plot is not None:
        from backtest.report import write_html

        write_html(result, plot, title=f"{chosen.name} {symbol}")
    change = float(result.total_return)
    typer.echo(f"{chosen.name} {symbol} {result.params}: {len(candles):,} candles "
               f"({result.engine} engine), final equity {result.final_equity:.2f} ({change:+.2%}), "
               f"{len(result.trades)} trades, fees {result.fees_paid:.2f}")


def _check_paths(data: Path, json_out: Path | None, plot: Path | None) -> None:
    if not data.is_file():
        raise fail(f"--data {data}: no such file")
    for option, path in (("--json", json_out), ("--plot", plot)):
        if path is not None and not path.parent.is_dir():
            raise fail(f"{option} {path}: folder {path.parent} does not exist")


def _progress() -> Progress:
    """A progress bar on stderr, so stdout keeps only the summary line."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=Console(stderr=True),
    )
