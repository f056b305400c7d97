"""`cryptiq indicators`: every indicator of a candle file, written to Parquet, in batch or streaming form."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cli.main import fail, settings_of

if TYPE_CHECKING:
    from rich.progress import Progress


def indicators(
    ctx: typer.Context,
    *,
    data: Annotated[
        Path, typer.Option("--data", help="Candle file: .csv[.gz], .parquet, .feather or .json[l][.gz].")
    ],
    out: Annotated[Path, typer.Option("--out", help="Parquet file to write (its folder must exist).")],
    streaming: Annotated[
        bool,
        typer.Option(
            "--streaming",
            help="Compute candle by candle with the incremental indicators the agents use, instead of "
            "TA-Lib over whole columns. Both give the same values.",
        ),
    ] = False,
    names: Annotated[
        str | None,
        typer.Option(
            "--indicators",
            help="Comma-separated indicators, e.g. rsi_14,ema_9,macd_12_26_9,bb_20_2.5,cdl_hammer "
            "(default: the standard set, see README).",
        ),
    ] = None,
    symbol: Annotated[
        str | None, typer.Option(help="Symbol to take from a file that holds several, e.g. BTC/USDT.")
    ] = None,
) -> None:
    """Compute indicators for a candle file and write them to Parquet.

    The file is read and checked with the market-data quality policy (sorted, duplicates
    dropped, invalid candles rejected with a logged reason). The output has `open_time` (UTC ms)
    and one column per indicator output, named with its parameters (`rsi_14`,
    `macd_signal_12_26_9`, `bb_upper_20_2`, `cdl_hammer`); rows before an indicator has enough
    history are empty.
    """
    from indicators.catalog import DEFAULT_INDICATORS, compute_batch, compute_streaming, parse_indicators

    if out.suffix.lower() != ".parquet":
        raise fail(f"--out {out} must end in .parquet")
    if not out.parent.is_dir():
        raise fail(f"--out {out}: folder {out.parent} does not exist")
    requested = DEFAULT_INDICATORS if names is None else [name for name in names.split(",") if name.strip()]
    try:
        specs = parse_indicators(requested)
    except ValueError as exc:
        raise fail(f"--indicators: {exc}") from None
    settings_of(ctx)  # configures logging: the quality policy logs what it repairs or rejects

    from agents.market_data.files import read_candles

    candles = read_candles(data, symbol=symbol)
    if candles.empty:
        raise fail(f"{data} holds no valid candles")
    chosen = [spec.name for spec in specs]
    if streaming:
        with _progress() as progress:
            task = progress.add_task("indicators, candle by candle", total=len(candles))
            frame = compute_streaming(
                candles, chosen, on_candle=lambda done: progress.update(task, completed=done)
            )
    else:
        frame = compute_batch(candles, chosen)
    frame.to_parquet(out, index=False)
    form = "streaming" if streaming else "batch"
    width = len(frame.columns) - 1
    typer.echo(f"{data}: {len(frame):,} candles, {width} indicator columns ({form}) -> {out}")


def _progress() -> Progress:
    """A progress bar on stderr, so stdout keeps only the summary line."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=Console(stderr=True),
    )
