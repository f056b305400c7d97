"""`cryptiq compare`: several strategies (or parameter sets) on the same candles, side by side.

Also the helpers the other analytics commands share: reading the candles (a file, or the bundled
data of `--symbol`), parsing `name:key=value,...` strategy specs, the progress bar, writing plots.
"""

from __future__ import annotations

import json
import math
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cli.main import fail, settings_of

if TYPE_CHECKING:
    import pandas as pd

    from backtest.benchmarks import Benchmark
    from backtest.compare import Comparison
    from backtest.montecarlo import Bands
    from backtest.report import Section
    from config.settings import PaperTradingConfig

TABLE_KEYS = (
    "total_return",
    "cagr",
    "sharpe",
    "sortino",
    "calmar",
    "max_drawdown",
    "max_drawdown_duration_days",
    "win_rate",
    "profit_factor",
    "exposure",
    "turnover",
    "fees_paid",
    "trades",
)
SHORT = {
    "max_drawdown_duration_days": "dd days",
    "profit_factor": "pf",
    "total_return": "return",
    "max_drawdown": "max dd",
    "fees_paid": "fees",
}


# ---------------------------------------------------------------- shared helpers


def load_candles(symbol: str, data: Path | None, bars: int | None) -> tuple[pd.DataFrame, bool]:
    """(candles, bundled?): the file's candles of `symbol`, or the bundled ones; the last `bars` if given."""
    from agents.market_data.files import bundled_candles, read_candles

    if bars is not None and bars < 2:
        raise fail(f"--bars {bars}: must be at least 2")
    if data is not None:
        if not data.exists():
            raise fail(f"--data {data}: no such file")
        candles = read_candles(data, symbol=symbol)
        bundled = False
    else:
        sources = {source.symbol: source for source in bundled_candles()}
        if symbol not in sources:
            known = ", ".join(sorted(sources))
            raise fail(f"no bundled candles for {symbol}; bundled: {known} (or give --data FILE)")
        source = sources[symbol]
        candles = read_candles(source.path, symbol=symbol, timeframe=source.timeframe)
        bundled = True
    if len(candles) < 2:
        raise fail(f"{symbol}: {len(candles)} valid candles; a backtest needs at least 2")
    if bars is not None:
        candles = candles.iloc[-bars:].reset_index(drop=True)
    return candles, bundled


def timeframe_of(candles: pd.DataFrame) -> str:
    """The ccxt timeframe of the candles' median spacing (3600000 ms -> 1h)."""
    import numpy as np

    step = int(np.median(np.diff(candles["open_time"].to_numpy())))
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1_000)):
        if step % size == 0:
            return f"{step // size}{unit}"
    raise fail(f"candles {step} ms apart have no timeframe")


def parse_spec(text: str) -> tuple[str, dict[str, Any]]:
    """`name` or `name:key=value,key=value` -> (name, params typed by the strategy's space)."""
    from strategies import STRATEGIES

    name, _, rest = text.partition(":")
    name = name.strip()
    if name not in STRATEGIES:
        raise fail(f"--strategy {text}: unknown strategy {name!r}; known: {', '.join(sorted(STRATEGIES))}")
    space = {param.name: param for param in STRATEGIES[name].space}
    params: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or key not in space:
            raise fail(
                f"--strategy {text}: expected key=value with key one of {', '.join(space)}, got {item!r}"
            )
        kind = space[key].kind
        try:
            if kind == "bool":
                if value.strip().lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(value)
                params[key] = value.strip().lower() in ("true", "1", "yes")
            else:
                params[key] = int(value) if kind == "int" else float(value)
        except ValueError:
            raise fail(f"--strategy {text}: {key}={value!r} is not a valid {kind}") from None
    return name, params


# The cost options `compare` and `optimize` share; `costs` resolves them against `paper.*`.
CashOption = Annotated[str | None, typer.Option(help="Starting cash (default: paper.starting_cash).")]
FeeOption = Annotated[str | None, typer.Option(help="Fee rate per side (default: paper.taker_fee_rate).")]
SlippageOption = Annotated[str | None, typer.Option(
    "--slippage-bps", help="Slippage of every fill in basis points (default: paper.slippage_bps).")]


def costs(paper: PaperTradingConfig, cash: str | None, fee: str | None,
          slippage_bps: str | None) -> tuple[Decimal, Decimal, Decimal]:
    """Starting cash, fee rate and slippage (bps) from the options given, else from `paper.*`."""
    return (money("--cash", cash, positive=True) if cash is not None else paper.starting_cash,
            money("--fee", fee, below_one=True) if fee is not None else paper.taker_fee_rate,
            money("--slippage-bps", slippage_bps) if slippage_bps is not None else paper.slippage_bps)


def money(option: str, value: str, *, positive: bool = False, below_one: bool = False) -> Decimal:
    """A non-negative decimal option (positive / below 1 when asked), else a one-line error."""
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise fail(f"{option} {value}: not a number") from None
    if not number.is_finite() or number < 0 or (positive and number == 0) or (below_one and number >= 1):
        bounds = "above 0" if positive else "at least 0"
        raise fail(f"{option} {value}: must be {bounds}{' and below 1' if below_one else ''}")
    return number


def progress_bar() -> Any:
    """A progress bar on stderr, so stdout keeps the results; only on a terminal, where someone watches."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=not console.is_terminal,
    )


def check_plots(plots: list[Path]) -> None:
    for path in plots:
        if path.suffix.lower() not in (".html", ".png"):
            raise fail(f"--plot {path}: the file name must end in .html or .png")


def write_plots(
    plots: list[Path], items: Any, *, benchmarks: Any = (), title: str, sections: Any = (), notes: Any = ()
) -> None:
    from backtest.report import write_html, write_png

    for path in plots:
        if path.suffix.lower() == ".html":
            write_html(items, path, benchmarks=benchmarks, title=title, sections=sections, notes=notes)
        else:
            write_png(items, path, benchmarks=benchmarks, title=title)
        typer.echo(f"wrote {path}")


def write_json(path: Path, payload: Any) -> None:
    from backtest.metrics import json_safe

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(json_safe(payload), indent=2, sort_keys=False) + "\n", encoding="utf-8")
    typer.echo(f"wrote {path}")


def cell(key: str, value: Any) -> str:
    from backtest.report import format_value

    return format_value(key, value)


def basket(symbols: str, candles: pd.DataFrame, cash: Decimal, fee: Decimal) -> Benchmark | None:
    """The equal-weight basket of bundled `symbols` ("all", "none" or a comma list) over the candles' span."""
    import pandas as pd

    from agents.market_data.files import bundled_candles, read_candles
    from backtest.benchmarks import equal_weight

    if symbols.strip().lower() == "none":
        return None
    sources = {source.symbol: source for source in bundled_candles()}
    wanted = sorted(sources) if symbols.strip().lower() == "all" else [s.strip() for s in symbols.split(",")]
    unknown = [s for s in wanted if s not in sources]
    if unknown:
        raise fail(
            f"--basket: no bundled candles for {', '.join(unknown)}; bundled: {', '.join(sorted(sources))}"
        )
    first, last = int(candles["open_time"].iloc[0]), int(candles["open_time"].iloc[-1])
    closes = {}
    for symbol in wanted:
        frame = read_candles(sources[symbol].path, symbol=symbol, timeframe=sources[symbol].timeframe)
        frame = frame[(frame["open_time"] >= first) & (frame["open_time"] <= last)]
        closes[symbol] = pd.Series(
            frame["close"].to_numpy(), index=pd.to_datetime(frame["open_time"], unit="ms", utc=True)
        )
    try:
        return equal_weight(closes, cash, fee)
    except ValueError:
        return None  # the basket's data does not cover these candles: no basket, said in the notes


# ---------------------------------------------------------------- the command


def compare(
    ctx: typer.Context,
    *,
    symbol: Annotated[
        str, typer.Option(help="ccxt symbol, e.g. BTC/USDT (picks the bundled file without --data).")
    ],
    strategy: Annotated[
        list[str],
        typer.Option(
            "--strategy",
            help="NAME or NAME:key=value,key=value (e.g. sma_cross:fast=10,slow=30); repeat it.",
        ),
    ],
    data: Annotated[
        Path | None, typer.Option(help="Candle file (default: the bundled 1h candles of --symbol).")
    ] = None,
    bars: Annotated[int | None, typer.Option(help="Use only the last N candles.")] = None,
    rank_by: Annotated[
        str, typer.Option("--rank-by", help="Metric to rank by, e.g. sharpe, total_return.")
    ] = "sharpe",
    cash: CashOption = None,
    fee: FeeOption = None,
    slippage_bps: SlippageOption = None,
    basket_symbols: Annotated[
        str,
        typer.Option(
            "--basket",
            help="Equal-weight basket benchmark of bundled symbols: all, none, or a comma list.",
        ),
    ] = "all",
    simulations: Annotated[int, typer.Option(help="Monte Carlo paths per strategy (0: none).", min=0)] = 0,
    block: Annotated[int, typer.Option(help="Bars per block of the returns bootstrap.", min=1)] = 1,
    seed: Annotated[int, typer.Option(help="Monte Carlo seed: the same seed gives the same bands.")] = 0,
    plot: Annotated[
        list[Path] | None,
        typer.Option(
            "--plot",
            help="Write the report: FILE.html (interactive) or FILE.png; repeat for both.",
        ),
    ] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write the comparison as JSON here.")
    ] = None,
    risk: Annotated[
        bool,
        typer.Option(
            "--risk",
            help="Size every intent with the configured risk engine (`risk.*`), as the live risk agent does, "
            "instead of passing sizes through (all in when the strategy gives none).",
        ),
    ] = False,
) -> None:
    """Backtest several strategies on the same candles and rank them, with a breakdown by market regime.

    Each --strategy runs on the same candles with the same costs. The table ranks them by
    --rank-by; the regime table shows each one's Sharpe within the bars entered in each regime
    (the rule detector with hysteresis, as the orchestrator runs it without a forest). Buy-and-hold
    of the asset and an equal-weight basket of bundled assets are shown beside them. With
    --simulations, a Monte Carlo bootstrap of each strategy's trades and bar returns gives
    percentile bands of final equity and max drawdown.
    """
    from backtest.benchmarks import buy_and_hold
    from backtest.compare import compare as rank
    from backtest.compare import regimes_for
    from backtest.metrics import METRIC_KEYS
    from backtest.montecarlo import monte_carlo
    from backtest.runner import Runner

    settings = settings_of(ctx)
    plots = list(plot or [])
    check_plots(plots)
    if rank_by not in METRIC_KEYS:
        raise fail(f"--rank-by {rank_by}: not a metric; use one of {', '.join(METRIC_KEYS)}")
    specs = [parse_spec(text) for text in strategy]
    start_cash, rate, slip = costs(settings.paper, cash, fee, slippage_bps)
    candles, bundled = load_candles(symbol, data, bars)
    runner = Runner(candles, symbol, start_cash, rate, slip, options={"risk": settings.risk} if risk else {})
    results = []
    with progress_bar() as progress:
        task = progress.add_task("backtests", total=len(specs))
        for name, params in specs:
            results.append(runner.backtest(name, params))
            progress.advance(task)
    regimes = regimes_for(candles, results[0].equity.index)
    comparison = rank(results, rank_by=rank_by, regimes=regimes)
    benchmarks = [buy_and_hold(results[0].closes, start_cash, rate, name=f"buy and hold {symbol}")]
    notes = [
        f"{symbol} {timeframe_of(candles)}, {len(candles):,} candles, cash {start_cash}, fee {rate}, "
        f"slippage {slip} bps; ranked by {rank_by}"
    ]
    if bundled or basket_symbols.strip().lower() != "all":
        basket_bench = basket(basket_symbols, candles, start_cash, rate)
        if basket_bench is not None:
            benchmarks.append(basket_bench)
        elif basket_symbols.strip().lower() != "none":
            notes.append("no equal-weight basket: the bundled data does not cover these candles")
    bands = (
        {
            entry.label: monte_carlo(entry.result, simulations=simulations, seed=seed, block=block)
            for entry in comparison.entries
        }
        if simulations
        else {}
    )
    _print(comparison, benchmarks, bands)
    sections = _sections(comparison, bands)
    write_plots(
        plots,
        [entry.result for entry in comparison.entries],
        benchmarks=benchmarks,
        title=f"{symbol}: strategies compared",
        sections=sections,
        notes=notes,
    )
    if json_out is not None:
        payload = comparison.to_dict()
        payload["benchmarks"] = [{"name": b.name, "metrics": b.metrics()} for b in benchmarks]
        payload["monte_carlo"] = {
            label: {kind: band.to_dict() for kind, band in both.items()} for label, both in bands.items()
        }
        payload["trades"] = {
            entry.label: [t.to_json() for t in entry.result.trades] for entry in comparison.entries
        }
        payload["data"] = {
            "symbol": symbol,
            "timeframe": timeframe_of(candles),
            "bars": len(candles),
            "cash": str(start_cash),
            "fee": str(rate),
            "slippage_bps": str(slip),
        }
        write_json(json_out, payload)


def monte_carlo_section(bands: dict[str, dict[str, Bands]]) -> Section | None:
    """The report's Monte Carlo table (label -> {"trades", "returns"} bands), None without bands."""
    import pandas as pd

    from backtest.report import Section

    rows = [
        {
            "strategy": label,
            "bootstrap": kind,
            "paths": band.simulations,
            **{f"equity p{p}": v for p, v in band.final_equity.items()},
            "actual equity": band.actual_final_equity,
            **{f"dd p{p}": v for p, v in band.max_drawdown.items()},
            "actual dd": band.actual_max_drawdown,
            "P(loss)": band.probability_of_loss,
        }
        for label, both in bands.items()
        for kind, band in both.items()
    ]
    if not rows:
        return None
    frame = pd.DataFrame(rows).set_index("strategy")
    percent = frozenset(c for c in frame.columns if c.startswith("dd") or c in ("actual dd", "P(loss)"))
    return Section("Monte Carlo", frame, "percentile bands of final equity and max drawdown", percent)


def print_monte_carlo(bands: dict[str, dict[str, Bands]]) -> None:
    """The Monte Carlo bands as a table on stdout."""
    from rich.console import Console
    from rich.table import Table

    mc = Table(title="Monte Carlo: final equity and max drawdown, 5th / 50th / 95th percentile")
    columns = ("strategy", "bootstrap", "equity p5", "p50", "p95", "actual", "dd p5", "p50", "p95", "actual",
               "P(loss)")
    for column in columns:
        mc.add_column(column, justify="left" if column in ("strategy", "bootstrap") else "right")
    for label, both in bands.items():
        for kind, band in both.items():
            mc.add_row(
                label,
                kind,
                *(cell("final_equity", band.final_equity[p]) for p in (5, 50, 95)),
                cell("final_equity", band.actual_final_equity),
                *(cell("max_drawdown", band.max_drawdown[p]) for p in (5, 50, 95)),
                cell("max_drawdown", band.actual_max_drawdown),
                cell("share", band.probability_of_loss),
            )
    Console(width=160).print(mc)


def _sections(comparison: Comparison, bands: dict[str, dict[str, Bands]]) -> list[Section]:
    from backtest.report import Section

    sections = [
        Section(
            "sharpe by regime",
            comparison.regime_table("sharpe"),
            "Sharpe of the bars entered in each regime (rule detector with hysteresis).",
        ),
        Section(
            "total return by regime",
            comparison.regime_table("total_return"),
            "compounded return of the bars entered in each regime",
            frozenset(comparison.regime_table("total_return").columns),
        ),
    ]
    section = monte_carlo_section(bands)
    if section is not None:
        sections.append(section)
    return sections


def _print(comparison: Comparison, benchmarks: list[Benchmark], bands: dict[str, dict[str, Bands]]) -> None:
    from rich.console import Console
    from rich.table import Table

    from backtest.compare import REGIME_ORDER

    console = Console(width=160)
    table = Table(title=f"strategies ranked by {comparison.rank_by}", caption="benchmarks below the line")
    table.add_column("#", justify="right")
    table.add_column("strategy", no_wrap=True)
    for key in TABLE_KEYS:
        table.add_column(SHORT.get(key, key), justify="right")
    for rank, entry in enumerate(comparison.entries, 1):
        table.add_row(str(rank), entry.label, *(cell(k, entry.metrics[k]) for k in TABLE_KEYS))
    table.add_section()
    for bench in benchmarks:
        metrics = bench.metrics()
        table.add_row(
            "",
            bench.name,
            *(cell(k, metrics.get(k, math.nan)) if k in metrics else "" for k in TABLE_KEYS),
            style="dim",
        )
    console.print(table)
    regimes = comparison.regime_table("sharpe")
    shares = comparison.entries[0].regimes
    by_regime = Table(title="sharpe by regime (bars entered in it)")
    by_regime.add_column("strategy", no_wrap=True)
    for regime in regimes.columns:
        share = shares.get(regime, {}).get("share", 0.0)
        by_regime.add_column(f"{regime} ({share * 100:.0f} %)", justify="right")
    for label, row in regimes.iterrows():
        by_regime.add_row(str(label), *(cell("sharpe", value) for value in row))
    best = comparison.best_per_regime("sharpe")
    by_regime.add_section()
    by_regime.add_row("best", *(best.get(r, "") for r in regimes.columns if r in REGIME_ORDER), style="bold")
    console.print(by_regime)
    if bands:
        print_monte_carlo(bands)
