"""`cryptiq data import | list`: candle files into the local store the files source replays."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.main import fail, settings_of

app = typer.Typer(
    help="Import candle files (CSV, Parquet, Feather, JSON) into the store that `market.source: files` "
    "replays, and list what is there.",
    no_args_is_help=True,
)


@app.command("import")
def import_(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="Candle file: .csv[.gz], .parquet, .feather, .json[l][.gz].")],
    exchange: Annotated[str, typer.Option(help="Exchange the candles come from, e.g. binance.")],
    symbol: Annotated[
        str, typer.Option(help="Unified symbol, e.g. BTC/USDT (selects it in multi-symbol files).")
    ],
    timeframe: Annotated[str, typer.Option(help="Candle timeframe, e.g. 1m, 5m, 1h, 1d.")],
) -> None:
    """Check a candle file with the data-quality policy and add it to the store.

    Repaired rows are kept (with the reason logged), rejected rows are written beside the store
    file as `<timeframe>.rejects.csv` with their reasons, and gaps are reported. Importing the
    same data again changes nothing; newer candles are merged in.
    """
    import pandas as pd

    from agents.market_data.agent import store_dir
    from agents.market_data.files import read_raw_candles
    from agents.market_data.quality import clean_frame
    from topics.market import timeframe_ms

    try:
        timeframe_ms(timeframe)
    except ValueError as exc:
        raise fail(f"--timeframe {exc}") from None
    if "/" not in symbol:
        raise fail(f"--symbol {symbol!r} is not a unified symbol like BTC/USDT")
    if not exchange.replace("_", "").isalnum():
        raise fail(f"--exchange {exchange!r} is not an exchange id like binance")
    settings = settings_of(ctx)
    raw = read_raw_candles(file, symbol=symbol).drop(columns=["symbol"], errors="ignore")
    target = store_dir(settings) / exchange.lower() / symbol.replace("/", "-") / f"{timeframe}.parquet"
    existing = pd.read_parquet(target) if target.exists() else None
    combined = pd.concat([existing, raw], ignore_index=True) if existing is not None else raw
    result = clean_frame(combined, timeframe=timeframe, source=str(file))
    target.parent.mkdir(parents=True, exist_ok=True)
    result.frame.to_parquet(target, index=False)
    rejects_path = target.with_name(f"{timeframe}.rejects.csv")
    if result.rejects:
        rows = [dict(candle._asdict(), reason=reason) for candle, reason in result.rejects]
        pd.DataFrame(rows).to_csv(rejects_path, index=False)
    missing = sum(count for _, count in result.gaps)
    new = len(result.frame) - (len(existing) if existing is not None else 0)
    typer.echo(
        f"{file}: {len(raw):,} rows read, {len(result.frame):,} candles stored ({new:+,} new), "
        f"{len(result.repairs):,} repaired, {len(result.rejects):,} rejected, "
        f"{len(result.gaps):,} gaps ({missing:,} candles missing)"
    )
    typer.echo(f"stored in {target}")
    if result.rejects:
        typer.echo(f"rejected rows and reasons in {rejects_path}")


@app.command("list")
def list_(ctx: typer.Context) -> None:
    """The imported candle files: exchange, symbol, timeframe, candles, first and last candle."""
    import pandas as pd
    from rich.console import Console
    from rich.table import Table

    from agents.market_data.agent import store_dir, stored_candles

    settings = settings_of(ctx)
    sources = stored_candles(settings)
    if not sources:
        typer.echo(f"nothing imported under {store_dir(settings)}: the files source uses the bundled data")
        return
    table = Table(title=f"candles in {store_dir(settings)}")
    for column in ("exchange", "symbol", "timeframe", "candles", "first (UTC)", "last (UTC)"):
        table.add_column(column)
    for source in sources:
        times = pd.read_parquet(source.path, columns=["open_time"])["open_time"]
        first, last = (
            pd.Timestamp(int(t), unit="ms", tz="UTC").isoformat() for t in (times.min(), times.max())
        )
        table.add_row(source.exchange, source.symbol, source.timeframe, f"{len(times):,}", first, last)
    Console().print(table)
