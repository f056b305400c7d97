"""`cryptiq record` (topics -> a recording on disk) and `cryptiq replay` (a recording -> topics).

The format and the guarantees are in `topics/recording.py`. Both commands stop cleanly on
Ctrl-C or SIGTERM: `record` writes its manifest and exits 0; `replay` waits for what it sent and
exits 1, because the replay is incomplete. Progress goes to stderr, the summary to stdout.
"""

from __future__ import annotations

import asyncio
import math
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cli.main import fail, settings_of

if TYPE_CHECKING:
    from rich.progress import Progress

    from config import Settings


def record(
    ctx: typer.Context,
    *,
    topics: Annotated[
        str,
        typer.Option(
            "--topics",
            help="Comma-separated topics to record, e.g. market.candles,signals.technical. Any topic "
            "that exists on the broker may be named.",
        ),
    ],
    out: Annotated[
        Path, typer.Option("--out", help="New (or empty) directory to write the recording into.")
    ],
    from_beginning: Annotated[
        bool,
        typer.Option("--from-beginning", help="Start at the oldest retained record (default: from now on)."),
    ] = False,
    until_idle: Annotated[
        float | None,
        typer.Option("--until-idle", min=0.001, help="Stop after this many seconds without a new record."),
    ] = None,
    max_records: Annotated[
        int | None, typer.Option("--max-records", min=1, help="Stop after recording this many records.")
    ] = None,
) -> None:
    """Record topics into a replayable log (gzip JSON-lines segments plus manifest.json).

    Runs until Ctrl-C or SIGTERM, --until-idle or --max-records, then writes the manifest.
    No consumer group is used, so recording never moves an agent's offsets.
    """
    from topics.recording import Recorder

    names = list(dict.fromkeys(part.strip() for part in topics.split(",") if part.strip()))
    if not names:
        raise fail("--topics names no topic: give e.g. --topics market.candles")
    client = _client_kwargs(settings_of(ctx))

    async def main() -> int:
        stop = _stop_on_signals()
        async with Recorder(client, names, out, from_beginning=from_beginning) as recorder:
            with _progress(total=None) as bar:
                task = bar.add_task(f"recording {', '.join(names)}", total=None)
                await recorder.record(
                    stop=stop, until_idle_s=until_idle, max_records=max_records,
                    progress=lambda n: bar.update(task, completed=n),
                )
        return recorder.recorded

    recorded = asyncio.run(main())
    typer.echo(f"recorded {recorded} records of {', '.join(names)} into {out}")


def replay(
    ctx: typer.Context,
    directory: Annotated[Path, typer.Argument(help="A recording made by `cryptiq record`.")],
    speed: Annotated[
        str,
        typer.Option(
            "--speed",
            help="Recorded seconds per real second: 1 (real time), 10, 60, any positive number, or max "
            "(as fast as the broker takes them).",
        ),
    ] = "max",
    into: Annotated[
        str,
        typer.Option(
            "--into",
            help="Prefix for the target topics, e.g. 'replay.' publishes market.candles into "
            "replay.market.candles (created with the recorded partition count). Default: the "
            "recorded topics themselves.",
        ),
    ] = "",
) -> None:
    """Republish a recording: same keys, value bytes, headers and event times, per-key order kept."""
    from topics.recording import Replayer, check_prefix, open_recording

    pace = parse_speed(speed)
    check_prefix(into)
    recording = open_recording(directory)
    settings = settings_of(ctx)
    client = _client_kwargs(settings)

    async def main() -> tuple[int, int, float, bool]:
        stop = _stop_on_signals()
        async with Replayer(
            client, recording, speed=pace, into=into, replication_factor=settings.kafka.replication_factor
        ) as replayer:
            total = recording.manifest.records
            with _progress(total=total) as bar:
                task = bar.add_task(f"replaying {directory.name}", total=total)
                result = await replayer.run(stop=stop, progress=lambda n: bar.update(task, completed=n))
        return result.sent, result.total, result.seconds, result.stopped

    sent, total, seconds, stopped = asyncio.run(main())
    targets = ", ".join(into + topic for topic in recording.manifest.topics)
    typer.echo(f"replayed {sent} of {total} records into {targets} in {seconds:.1f} s")
    if stopped:
        raise typer.Exit(1)


def parse_speed(text: str) -> float | None:
    """`max` -> None (no pacing); a positive number -> itself; anything else -> a one-line error."""
    if text.strip().lower() == "max":
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise fail(f"--speed must be max or a positive number such as 1, 10 or 60, got {text!r}")
    return value


def _client_kwargs(settings: Settings) -> dict[str, object]:
    import infra

    return infra.kafka_client_kwargs(settings.kafka, infra.endpoints(settings).kafka_bootstrap)


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


def _progress(total: int | None) -> Progress:
    """A rich progress display on stderr: a bar when the total is known, a counter otherwise."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    if total is None:
        counter = TextColumn("{task.description}: {task.completed} records")
        columns = [SpinnerColumn(), counter, TimeElapsedColumn()]
    else:
        columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()]
    return Progress(*columns, console=Console(stderr=True))
