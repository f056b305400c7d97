"""`cryptiq scan`: the scanner's latest ranked snapshot, read from `market.scan`."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any

import typer

from cli.main import fail, settings_of

TAIL = 200  # records read back per partition: snapshots are small and the newest is near the end


def scan(
    ctx: typer.Context,
    timeframe: Annotated[
        str | None, typer.Option(help="Which snapshot (e.g. 1h); default: every timeframe scanned.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the snapshots as JSON.")] = False,
) -> None:
    """Print the current market scan: the ranked universe with % changes, volume and spikes.

    The scanner agent must have run (`cryptiq run`, or `cryptiq agent scanner` with market data).
    """
    import infra

    settings = settings_of(ctx)
    endpoints = infra.endpoints(settings)
    kwargs = infra.kafka_client_kwargs(settings.kafka, endpoints.kafka_bootstrap)
    snapshots = asyncio.run(_latest(kwargs))
    if timeframe is not None:
        snapshots = {key: value for key, value in snapshots.items() if value["timeframe"] == timeframe}
    if not snapshots:
        where = f" for timeframe {timeframe}" if timeframe else ""
        raise fail(f"no market scan{where} yet: run the scanner (`cryptiq run`) on some market data first")
    if as_json:
        typer.echo(json.dumps(list(snapshots.values()), indent=2))
        return
    for snapshot in snapshots.values():
        _print(snapshot)


async def _latest(kwargs: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The newest snapshot per key (market.scan is compacted on Kafka; read the tail anyway)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from topics.recording import seek_to_log_end
    from topics.registry import MARKET_SCAN

    consumer = AIOKafkaConsumer(**kwargs, enable_auto_commit=False)
    await consumer.start()
    latest: dict[str, dict[str, Any]] = {}
    try:
        partitions = [TopicPartition(MARKET_SCAN.name, p)
                      for p in sorted(consumer.partitions_for_topic(MARKET_SCAN.name) or ())]
        if not partitions:
            return latest
        consumer.assign(partitions)
        ends = await seek_to_log_end(consumer, partitions)  # Tansu's end_offsets can fall short
        for tp in partitions:
            consumer.seek(tp, max(0, ends[tp] - TAIL))
        remaining = {tp for tp in partitions if ends[tp] > 0}
        while remaining:
            batch = await consumer.getmany(timeout_ms=1000)
            if not batch:
                break
            for tp, records in batch.items():
                for record in records:
                    body = json.loads(record.value)
                    key = body["key"]
                    if key not in latest or body["ts"] >= latest[key]["ts"]:
                        latest[key] = body
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
        return {key: {"ts": body["ts"], **body["payload"]} for key, body in sorted(latest.items())}
    finally:
        await consumer.stop()


def _print(snapshot: dict[str, Any]) -> None:
    import pandas as pd
    from rich.console import Console
    from rich.table import Table

    as_of = pd.Timestamp(snapshot["as_of"], unit="ms", tz="UTC").strftime("%Y-%m-%d %H:%M UTC")
    table = Table(title=f"market scan {snapshot['timeframe']} as of {as_of}, ranked by {snapshot['rank_by']}")
    windows = list(snapshot["rows"][0]["change_pct"]) if snapshot["rows"] else []
    for column in ("#", "symbol", "exchange", "price", *[f"chg {w}" for w in windows], "quote vol",
                   "vol z", "band", "signals"):
        table.add_column(column, justify="left" if column in {"symbol", "exchange", "signals"} else "right")
    for row in snapshot["rows"]:
        changes = [_pct(row["change_pct"][w]) for w in windows]
        table.add_row(
            str(row["rank"]), row["symbol"], row["exchange"], f"{row['price']:,.6g}", *changes,
            f"{row['quote_volume']:,.0f}", _num(row["volume_z"]), _num(row["bb_position"]),
            ", ".join(row["signals"]) or "-",
        )
    console = Console()
    # Piped output (no terminal to measure) gets room for the whole table instead of 80 columns.
    (console if console.is_terminal else Console(width=160)).print(table)


def _pct(value: float | None) -> str:
    if value is None:
        return "-"
    color = "green" if value > 0 else "red" if value < 0 else ""
    return f"[{color}]{value:+.2f}%[/{color}]" if color else f"{value:+.2f}%"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"
