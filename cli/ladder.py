"""`cryptiq ladder`: laddered entries and exits sized to a risk tolerance, with the odds of their P/L."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from cli.formats import money, plain
from cli.main import fail, settings_of

if TYPE_CHECKING:
    import pandas as pd

    from strategies.ladder import Ladder


def parse_risk(text: str) -> Decimal:
    """`1%` or `0.01` -> Decimal('0.01'); a one-line error for anything not in (0 %, 100 %]."""
    raw = text.strip()
    try:
        value = Decimal(raw[:-1].strip()) / 100 if raw.endswith("%") else Decimal(raw)
    except InvalidOperation:
        raise fail(f"--risk {text}: not a number; write 1% or 0.01") from None
    if not value.is_finite() or not 0 < value <= 1:
        raise fail(f"--risk {text}: must be above 0% and at most 100% of equity, e.g. 1% or 0.01")
    return value


def _ratios(option: str, text: str) -> tuple[float, ...]:
    try:
        return tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise fail(f"{option} {text}: expected comma-separated Fibonacci ratios like 0.382,0.5") from None


def _candles(symbol: str, data: Path | None) -> pd.DataFrame:
    from agents.market_data.files import bundled_candles, read_candles

    if data is not None:
        return read_candles(data, symbol=symbol)
    sources = {source.symbol: source for source in bundled_candles()}
    if symbol not in sources:
        raise fail(f"no bundled candles for {symbol}; bundled: {', '.join(sorted(sources))} "
                   "(or give --data FILE)")
    source = sources[symbol]
    return read_candles(source.path, symbol=symbol, timeframe=source.timeframe)


def ladder(
    ctx: typer.Context,
    symbol: Annotated[str, typer.Argument(help="ccxt symbol, e.g. BTC/USDT.")],
    *,
    risk: Annotated[str, typer.Option(
        "--risk", help="Risk tolerance: equity lost if every entry fills and the stop is hit: 1% or 0.01.",
    )] = "1%",
    equity: Annotated[float, typer.Option(help="Account equity in the quote currency.")] = 10_000.0,
    data: Annotated[Path | None, typer.Option(
        "--data", help="Candle file (default: the bundled 1h candles of SYMBOL).",
    )] = None,
    side: Annotated[Literal["long", "short"], typer.Option(
        help="long: buy a pullback of the up swing; short: sell a bounce of the down swing.",
    )] = "long",
    swing_lookback: Annotated[int, typer.Option(
        "--swing-lookback", help="Latest candles whose highest high and lowest low are the swing.",
    )] = 168,
    entries: Annotated[str, typer.Option(help="Entry retracement ratios, comma-separated.")] = (
        "0.382,0.5,0.618"
    ),
    exits: Annotated[str, typer.Option(help="Exit extension ratios, comma-separated.")] = "1.272,1.618",
    win_rate: Annotated[float | None, typer.Option(
        "--win-rate", help="Your measured win rate for the Kelly cap (default: measured in the simulation).",
    )] = None,
    simulations: Annotated[int, typer.Option(help="Monte Carlo paths.")] = 10_000,
    horizon: Annotated[int, typer.Option(help="Candles a simulated path runs before it closes.")] = 168,
    fee: Annotated[float, typer.Option(help="Fee per side as a fraction.")] = 0.001,
    seed: Annotated[int, typer.Option(help="Simulation seed: the same seed prints the same plan.")] = 0,
) -> None:
    """Plan laddered entries and exits from Fibonacci levels, sized per level, with a Monte Carlo of the P/L.

    The swing is the highest high and lowest low of the last --swing-lookback candles. Entries sit
    at retracements, the stop at the swing's start, exits at extensions (each closes an equal
    share). The risk budget (equity x --risk) is split over the entries and each is capped by
    fractional Kelly (config risk.kelly_fraction) from its win rate and risk-reward. The P/L
    percentiles come from bootstrapping the file's per-candle returns over --horizon candles.
    """
    import numpy as np

    from strategies.ladder import LadderRisk, LadderSetup, build_ladder, find_swing, log_returns

    tolerance = parse_risk(risk)
    if not equity > 0:
        raise fail(f"--equity {equity:g}: must be positive")
    for option, value, least in (("--swing-lookback", swing_lookback, 2), ("--simulations", simulations, 1),
                                 ("--horizon", horizon, 1)):
        if value < least:
            raise fail(f"{option} {value}: must be at least {least}")
    if win_rate is not None and not 0 <= win_rate <= 1:
        raise fail(f"--win-rate {win_rate:g}: must be a fraction between 0 and 1, e.g. 0.55")
    if not 0 <= fee < 0.1:
        raise fail(f"--fee {fee:g}: must be a fraction per side between 0 and 0.1, e.g. 0.001")
    settings = settings_of(ctx)
    candles = _candles(symbol, data)
    if len(candles) < swing_lookback:
        raise fail(f"{symbol} has {len(candles)} candles, fewer than --swing-lookback {swing_lookback}")
    try:
        swing = find_swing(candles["high"], candles["low"], swing_lookback)
        ratios = _ratios("--entries", entries), _ratios("--exits", exits)
        setup = LadderSetup(side, swing.high, swing.low, *ratios)
        params = LadderRisk(
            equity=Decimal(str(equity)), risk=tolerance, kelly_multiplier=settings.risk.kelly_fraction,
            win_rate=win_rate, simulations=simulations, horizon=horizon, fee=fee,
        )
        plan = build_ladder(setup, params, price=float(candles["close"].iloc[-1]),
                            returns=log_returns(candles["close"]), rng=np.random.default_rng(seed))
    except ValueError as exc:
        raise fail(str(exc)) from None
    _print(symbol, swing_lookback, plan, falling=(swing.low_index > swing.high_index) == (side == "long"))


def _print(symbol: str, lookback: int, plan: Ladder, *, falling: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    out = console if console.is_terminal else Console(width=120)
    setup = plan.setup
    low, high = (plain(Decimal(repr(value))) for value in (setup.swing_low, setup.swing_high))
    out.print(f"{symbol} {setup.side} ladder at {plain(plan.price)}, swing {low} -> {high} "
              f"(last {lookback} candles)")
    out.print(f"equity {money(plan.equity)}, risk budget {money(plan.risk_budget)}, "
              f"planned risk {money(plan.total_risk)}")
    levels = Table(title="levels")
    for column in ("level", "fib", "price", "size", "risk", "R:R", "win", "kelly", "fills"):
        levels.add_column(column, justify="left" if column == "level" else "right")
    for level in plan.entries:
        levels.add_row(
            "entry", f"{level.ratio:g}", plain(level.price), plain(level.size),
            money(level.risk), f"{level.risk_reward:.2f}",
            "-" if level.win_rate is None else f"{level.win_rate:.1%}",
            "-" if level.kelly is None else f"{level.kelly:.2%}", f"{level.fill_probability:.1%}",
        )
    for level in plan.exits:
        levels.add_row("exit", f"{level.ratio:g}", plain(level.price), plain(level.size), "",
                       f"{level.risk_reward:.2f}", "", "", f"{level.fill_probability:.1%}")
    levels.add_row("stop", f"{setup.stop_ratio:g}", plain(plan.stop), plain(plan.total_size),
                   money(plan.total_risk), "", "", "", "")
    out.print(levels)
    mc = plan.monte_carlo
    outcome = Table(title=f"Monte Carlo P/L: {mc.simulations:,} bootstrapped paths x {mc.horizon} candles")
    for name in (*(f"p{p}" for p in mc.percentiles), "mean", "P(loss)", "P(any fill)"):
        outcome.add_column(name, justify="right")
    outcome.add_row(*(money(v) for v in mc.percentiles.values()), money(mc.mean),
                    f"{mc.probability_of_loss:.1%}", f"{mc.fill_probability:.1%}")
    out.print(outcome)
    notes = list(plan.notes)
    if falling:
        end = "low" if setup.side == "long" else "high"
        notes.insert(0, f"the swing runs against a {setup.side}: its {end} came last")
    for note in notes:
        out.print(f"note: {note}")
