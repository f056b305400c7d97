"""`cryptiq topics list|schema`: what the system publishes, for operators and other-language consumers."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from topics.registry import REGISTRY, TopicSpec

app = typer.Typer(no_args_is_help=True)


def _retention(spec: TopicSpec) -> str:
    if spec.compacted:
        return "compacted"
    if spec.retention_ms is None:
        return "forever"
    return f"{spec.retention_ms / 86_400_000:g} d"


@app.command("list")
def list_topics(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines instead of a table.")] = False,
) -> None:
    """List every topic: name, key, event types (with versions), partitions and retention."""
    rows = [
        {
            "name": spec.name,
            "key": spec.key,
            "events": [f"{event.TYPE} v{event.VERSION}" for event in spec.events],
            "partitions": spec.partitions or "default",
            "retention": _retention(spec),
            "description": spec.description,
        }
        for spec in REGISTRY
    ]
    if as_json:
        for row in rows:
            typer.echo(json.dumps(row))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="CryptIQ topics (descriptions: --json)", title_justify="left")
    for column in ("topic", "key", "events", "partitions", "retention"):
        table.add_column(column, no_wrap=column in ("topic", "partitions", "retention"))
    for row in rows:
        table.add_row(
            str(row["name"]), str(row["key"]), ", ".join(row["events"]),  # type: ignore[arg-type]
            str(row["partitions"]), str(row["retention"]),
        )
    Console().print(table)


@app.command("schema")
def schema(name: Annotated[str, typer.Argument(help="Topic name, e.g. market.candles.")]) -> None:
    """Print the JSON Schema (draft 2020-12) of the messages on topic NAME."""
    from cli.main import fail
    from topics.schema import topic_schema

    try:
        spec = REGISTRY.get(name)
    except KeyError as exc:
        raise fail(str(exc.args[0])) from None
    typer.echo(json.dumps(topic_schema(spec), indent=2))
