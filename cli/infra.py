"""`cryptiq infra up | status | down`: the Kafka-protocol broker, Redis and Postgres CryptIQ needs.

Servers named in the settings (`kafka.bootstrap`, `redis.url`, `postgres.url`) are external and
only checked; the others are embedded (Tansu, redis-server, Postgres), started detached on free
loopback ports, with their state and logs under the CryptIQ home (`--config`, `CRYPTIQ_HOME`).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cli.main import settings_of

if TYPE_CHECKING:
    from config import Settings
    from infra import Endpoints

app = typer.Typer(
    help=(
        "Start, inspect and stop the Kafka-protocol broker, Redis and Postgres. "
        "Servers set in the config (kafka.bootstrap, redis.url, postgres.url) are external and only "
        "checked; the rest run embedded, with state and logs under the CryptIQ home."
    ),
    no_args_is_help=True,
)


@app.command()
def up(ctx: typer.Context) -> None:
    """Start the embedded servers, check the external ones, create topics and migrate tables.

    Idempotent: servers that already run are reused, dead ones are started again.
    """
    bring_up(settings_of(ctx))


def bring_up(settings: Settings) -> Endpoints:
    """What `up` does, for commands that need the servers (`cryptiq run`): the endpoints."""
    import infra

    endpoints = infra.up(settings)
    _after_up(settings, endpoints)
    _print_endpoints(settings, endpoints)
    return endpoints


@app.command()
def status(
    ctx: typer.Context,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print a JSON list of services instead of a table.")
    ] = False,
) -> None:
    """Show each server: embedded or external, where, pid, and whether it answers now.

    Exits 1 if any server does not answer.
    """
    import infra

    rows = infra.status(settings_of(ctx))
    if as_json:
        typer.echo(json.dumps([asdict(row) for row in rows], indent=2))
    else:
        _print_table(rows)
    if not all(row.answering for row in rows):
        raise typer.Exit(1)


@app.command()
def down(ctx: typer.Context) -> None:
    """Stop the embedded servers that `up` started (external servers are left alone).

    Postgres data stays under the CryptIQ home; the embedded broker keeps topics in memory only.
    """
    import infra

    stopped = infra.down(settings_of(ctx))
    typer.echo(f"stopped: {', '.join(stopped)}" if stopped else "no embedded server was running")


def _after_up(settings: Settings, endpoints: Endpoints) -> None:
    """Create the registry's topics and bring the Postgres schema up to date (both idempotent)."""
    from infra import kafka_client_kwargs
    from memory.migrations import upgrade
    from topics.admin import ensure_topics

    async def run_hooks() -> None:
        created = await ensure_topics(
            kafka_client_kwargs(settings.kafka, endpoints.kafka_bootstrap),
            default_partitions=settings.kafka.default_partitions,
            replication_factor=settings.kafka.replication_factor,
        )
        if created:
            typer.echo(f"created topics: {', '.join(created)}")
        await upgrade(endpoints.postgres_url)

    asyncio.run(run_hooks())


def _print_endpoints(settings: Settings, endpoints: Endpoints) -> None:
    from config.settings import redact_url

    def kind(embedded: bool) -> str:
        return "embedded" if embedded else "external"

    rows = [
        ("kafka", endpoints.kafka_bootstrap, kind(endpoints.kafka_embedded)),
        ("redis", redact_url(endpoints.redis_url), kind(endpoints.redis_embedded)),
        ("postgres", redact_url(endpoints.postgres_url), kind(endpoints.postgres_embedded)),
    ]
    for name, where, how in rows:
        typer.echo(f"{name:<9} {how:<9} {where}")
    typer.echo(f"{'state':<9} {'':<9} {settings.home.expanduser().resolve()} (infra.json, logs/)")


def _print_table(rows: list[Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="CryptIQ infrastructure")
    for column in ("service", "kind", "where", "pid", "answering", "detail"):
        table.add_column(column, overflow="fold")
    for row in rows:
        answering = "[green]yes[/green]" if row.answering else "[red]no[/red]"
        pid = str(row.pid) if row.pid is not None else "-"
        table.add_row(row.name, row.kind, row.where, pid, answering, row.detail)
    Console().print(table)
