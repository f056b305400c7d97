"""`cryptiq agent NAME` (one agent per process) and `cryptiq run` (the whole system in one process).

Each stream agent has its own consumer group (its name), so running `echo` alone in one process
and inside `cryptiq run` in another shares its work instead of doing it twice. Source agents
(`market_data`) publish candles from files or exchanges. Everything stops on SIGTERM or Ctrl-C:
the batch in hand is finished and committed. The exit code is 1 when an agent crashed.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cli.main import fail, settings_of

if TYPE_CHECKING:
    from agents.runtime import AgentHost, SourceHost
    from config import Settings
    from infra import Endpoints

    Host = AgentHost | SourceHost

READY_TIMEOUT_S = 30.0
SPEED_HELP = "Replay speed of file sources: 1, 10, 60 (times real time), any positive number, or max."


def parse_speed(text: str) -> float | None:
    """`max` -> None (as fast as possible); a positive number -> that factor."""
    if text == "max":
        return None
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise fail(f"--speed {text!r} is not valid: use 1, 10, 60, another positive number, or max")
    return value


def with_source(settings: Settings, source: str | None) -> Settings:
    """`settings` with `market.source` replaced, validated like the config key."""
    if source is None:
        return settings
    from pydantic import ValidationError

    from config.settings import MarketConfig

    try:
        market = MarketConfig.model_validate({**settings.market.model_dump(), "source": source})
    except ValidationError:
        hint = "use files or ccxt:<exchange id>, e.g. ccxt:binance"
        raise fail(f"--source {source!r} is not valid: {hint}") from None
    return settings.model_copy(update={"market": market})


def agent(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The agent to run (see `cryptiq agent --list`).")] = "",
    list_: Annotated[bool, typer.Option("--list", help="List the agents and exit.")] = False,
    speed: Annotated[str, typer.Option(help=SPEED_HELP)] = "max",
) -> None:
    """Run one agent in this process until SIGTERM or Ctrl-C (a file source also stops when done).

    The servers must be up (`cryptiq infra up`, or external ones in the config).
    """
    from agents.catalog import AGENTS, agent_class

    if list_ or not name:
        if not name and not list_:
            raise fail("name an agent to run, e.g. `cryptiq agent echo` (`--list` shows them all)")
        for known, cls in sorted(AGENTS.items()):
            doc = (cls.__doc__ or "").strip().splitlines()[0]
            typer.echo(f"{known:12} {doc}")
        return
    import infra

    cls = agent_class(name)
    pace = parse_speed(speed)
    settings = settings_of(ctx)
    raise typer.Exit(_serve(settings, infra.endpoints(settings), [cls], pace, follow=True, view=False))


def run(
    ctx: typer.Context,
    agents: Annotated[
        str | None,
        typer.Option("--agents", help="Comma-separated agents to host (default: every agent)."),
    ] = None,
    speed: Annotated[str, typer.Option(help=SPEED_HELP)] = "max",
    follow: Annotated[
        bool, typer.Option("--follow", help="Keep running after the file sources are replayed.")
    ] = False,
    source: Annotated[
        str | None,
        typer.Option(help="Market data source, overriding market.source: files or ccxt:<exchange id>."),
    ] = None,
    from_start: Annotated[
        bool,
        typer.Option("--from-start", help="Replay the files from the beginning even if they were published."),
    ] = False,
    screenshot: Annotated[
        Path | None,
        typer.Option("--screenshot", help="Before stopping, save a PNG of the live ops dashboard here "
                     "(headless Chromium; needs the dev extras)."),
    ] = None,
) -> None:
    """Bring the servers up, then run the agents here: the demo on the bundled real data.

    With `market.source: files` (the default) the market_data agent replays the imported
    candle files, or the bundled dataset, at --speed through every agent, shows live progress,
    and ends with a summary of what each agent produced once all of it has been processed.
    With a live source (`market.source: ccxt:binance`) it runs until SIGTERM or Ctrl-C.
    The ops API and dashboard run in the same process (`api.enabled`, `api.host`, `api.port`).
    """
    from agents.catalog import AGENTS, agent_class
    from cli.infra import bring_up

    names = [part.strip() for part in agents.split(",") if part.strip()] if agents else sorted(AGENTS)
    classes = [agent_class(name) for name in names]
    pace = parse_speed(speed)
    settings = with_source(settings_of(ctx), source)
    endpoints = bring_up(settings)
    if screenshot is not None and not settings.api.enabled:
        raise fail("--screenshot needs the ops API: set api.enabled (CRYPTIQ_API_ENABLED=true)")
    code = _serve(settings, endpoints, classes, pace, follow=follow, view=True, from_start=from_start,
                  api=settings.api.enabled, screenshot=screenshot)
    raise typer.Exit(code)


def _hosts(
    settings: Settings, endpoints: Endpoints, classes: list[type], speed: float | None, *, from_start: bool
) -> list[Host]:
    from agents.catalog import is_source
    from agents.runtime import AgentHost, SourceHost

    hosts: list[Host] = []
    for cls in classes:
        if is_source(cls):
            hosts.append(SourceHost(
                lambda deps, cls=cls: cls.from_settings(deps, settings), cls.name, settings, endpoints,
                speed=speed, from_start=from_start,
            ))
        else:
            hosts.append(AgentHost(cls, settings, endpoints))
    # Stream agents first: they should be in their groups before the data starts to flow.
    return sorted(hosts, key=lambda host: isinstance(host, SourceHost))


def _serve(
    settings: Settings, endpoints: Endpoints, classes: list[type], speed: float | None, *, follow: bool,
    view: bool, from_start: bool = False, api: bool = False, screenshot: Path | None = None,
) -> int:
    from agents.runtime import SourceHost

    async def main() -> int:
        loop = asyncio.get_running_loop()
        stopping = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopping.set)
        hosts = _hosts(settings, endpoints, classes, speed, from_start=from_start)
        streams = [host for host in hosts if not isinstance(host, SourceHost)]
        sources = [host for host in hosts if isinstance(host, SourceHost)]
        started: list[Host] = []
        healthy = True
        began = time.monotonic()
        server = None
        try:
            for host in streams:
                await host.start()
                started.append(host)
            healthy = await _all_ready(streams, stopping)
            if api and healthy:
                server = await _start_api(settings, endpoints)
            if healthy and not stopping.is_set():
                for host in sources:
                    await host.start()
                    started.append(host)
                finished = None if follow or not sources else _drained(sources, streams)
                watch = _watch(hosts, stopping, finished)
                await (_live_view(hosts, watch) if view else watch)
                if server is not None and screenshot is not None:
                    from cli.dashboard import screenshot as take_screenshot

                    await asyncio.sleep(2 * settings.agents.commit_interval_s)  # the last checkpoint
                    await take_screenshot(server.url, endpoints.postgres_url, screenshot)
                    typer.echo(f"dashboard screenshot: {screenshot}")
        finally:
            for host in reversed(started):
                await host.stop()
            if server is not None:
                await server.stop()
        crashed = [host for host in hosts if host.error is not None]
        for host in crashed:
            typer.secho(f"error: agent {host.name} crashed: {host.error}", err=True, fg=typer.colors.RED)
        if view and started:
            _print_summary(hosts, time.monotonic() - began)
        return 0 if healthy and not crashed else 1

    return asyncio.run(main())


async def _start_api(settings: Settings, endpoints: Endpoints) -> Any:
    """The ops API and dashboard in this process; the first admin user is made (and shown) if none exists."""
    from cli.dashboard import first_admin
    from orchestrator.api import ApiServer

    server = ApiServer(settings, endpoints)
    await server.start()
    await first_admin(endpoints.postgres_url)
    typer.echo(f"ops API and dashboard on {server.url} (OpenAPI: {server.url}/docs)")
    return server


async def _watch(hosts: list[Host], stopping: asyncio.Event, finished: asyncio.Task[None] | None) -> None:
    """Until Ctrl-C/SIGTERM, a crash, or (file sources) everything has been processed."""
    waits = [asyncio.ensure_future(stopping.wait())]
    waits += [asyncio.ensure_future(host.crashed.wait()) for host in hosts]
    if finished is not None:
        waits.append(finished)
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waits:
            waiter.cancel()


def _drained(sources: list[SourceHost], streams: list[AgentHost]) -> asyncio.Task[None]:
    """Done when every source is exhausted and every stream agent has nothing left to read."""

    async def wait() -> None:
        for source in sources:
            await source.done.wait()
        quiet_since = None
        while True:
            idle = all(host.lag() == 0 and host.idle for host in streams)
            quiet_since = (quiet_since or time.monotonic()) if idle else None
            if quiet_since is not None and time.monotonic() - quiet_since > 1.0:
                return
            await asyncio.sleep(0.2)

    return asyncio.ensure_future(wait())


async def _all_ready(hosts: list[AgentHost], stopping: asyncio.Event) -> bool:
    """Report each agent's readiness; False if one crashed or timed out (True if stopped first)."""
    if not hosts:
        return True
    ready = asyncio.gather(*(host.wait_ready(READY_TIMEOUT_S) for host in hosts), return_exceptions=True)
    stop = asyncio.ensure_future(stopping.wait())
    await asyncio.wait([ready, stop], return_when=asyncio.FIRST_COMPLETED)
    stop.cancel()
    if not ready.done():  # stopped while joining: a clean stop, nothing to report
        ready.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ready
        return True
    all_ready = True
    for host, outcome in zip(hosts, ready.result(), strict=True):
        if isinstance(outcome, float):
            topics = ", ".join(spec.name for spec in host.agent.consumes) if host.agent else ""
            typer.echo(f"agent {host.name} ready in {outcome:.1f} s (group {host.name}, consumes {topics})")
        elif isinstance(outcome, TimeoutError):
            all_ready = False
            typer.secho(
                f"error: agent {host.name} was not assigned partitions within {READY_TIMEOUT_S:.0f} s: "
                "check `cryptiq infra status` and the broker's log", err=True, fg=typer.colors.RED,
            )
        else:
            all_ready = False  # crashed: reported with the others on the way out
    if all_ready:
        typer.echo("running; Ctrl-C or SIGTERM drains, commits and stops")
    return all_ready


@dataclass
class _Row:
    agent: str
    status: str
    consumed: int
    produced: dict[str, int]
    dead_lettered: int
    lag: int


def _rows(hosts: list[Host]) -> list[_Row]:
    from agents.runtime import SourceHost

    rows = []
    for host in hosts:
        if isinstance(host, SourceHost):
            produced = dict(host.published)
            consumed = host.agent.rows_done() if host.agent and hasattr(host.agent, "rows_done") else 0
            dead = host.published.get("deadletter", 0)
            lag = 0
        else:
            stats = host.dispatcher.stats if host.dispatcher else None
            produced = dict(stats.produced) if stats else {}
            consumed = stats.processed if stats else 0
            dead = stats.dead_lettered if stats else 0
            lag = host.lag()
        status = "crashed" if host.error else host.state.status
        rows.append(_Row(host.name, status, consumed, produced, dead, lag))
    return rows


def _table(hosts: list[Host], title: str) -> object:
    from rich.table import Table

    table = Table(title=title)
    for column in ("agent", "status", "consumed", "produced", "dead-lettered", "lag"):
        table.add_column(column, justify="left" if column in {"agent", "status", "produced"} else "right")
    for row in _rows(hosts):
        produced = ", ".join(f"{topic} {count:,}" for topic, count in sorted(row.produced.items())) or "-"
        table.add_row(row.agent, row.status, f"{row.consumed:,}", produced, f"{row.dead_lettered:,}",
                      f"{row.lag:,}")
    return table


async def _live_view(hosts: list[Host], watch: object) -> None:
    """A live table of every agent and a progress bar per file source, refreshed 4 times a second."""
    from rich.console import Group
    from rich.live import Live
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from agents.runtime import SourceHost

    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn())
    bars = {}
    for host in hosts:
        if isinstance(host, SourceHost) and host.agent is not None and hasattr(host.agent, "total"):
            bars[host.name] = progress.add_task(f"{host.name}: candles replayed", total=host.agent.total())
    task = asyncio.ensure_future(watch)  # type: ignore[arg-type]
    with Live(Group(progress, _table(hosts, "agents")), refresh_per_second=4, transient=True) as live:
        while not task.done():
            for host in hosts:
                if host.name in bars and isinstance(host, SourceHost) and host.agent is not None:
                    progress.update(bars[host.name], completed=host.agent.rows_done())
            live.update(Group(progress, _table(hosts, "agents")))
            await asyncio.sleep(0.25)
    await task


def _print_summary(hosts: list[Host], seconds: float) -> None:
    from rich.console import Console

    console = Console()
    # Piped output (no terminal to measure) gets room for the whole table instead of 80 columns.
    summary = _table(hosts, f"summary after {seconds:.1f} s")
    (console if console.is_terminal else Console(width=140)).print(summary)
