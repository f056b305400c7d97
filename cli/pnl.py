"""`cryptiq pnl`: an account's books (paper by default) as the execution agent last stored them."""

from __future__ import annotations

import asyncio
from typing import Any

import typer

from cli.formats import money, plain
from cli.main import fail, settings_of


def pnl(
    ctx: typer.Context,
    account: str = typer.Option(
        "paper", "--account", help="paper, or a live venue's account: ccxt:<exchange id> or web3"
    ),
) -> None:
    """Print equity, realised and unrealised P/L, fees and open positions of an account (paper by default).

    The execution agent writes them (`cryptiq run`, or `cryptiq agent execution`) once it has traded.
    """
    import infra

    settings = settings_of(ctx)
    books = asyncio.run(_books(infra.endpoints(settings).postgres_url, account))
    if books is None or not books.get("positions"):
        if account != "paper" and books is None:
            raise fail(f"no books for account {account!r}: it is opened when the execution agent starts "
                       "with execution.venue set to it")
        raise fail(f"nothing traded yet on account {account!r}: run the risk and execution agents "
                   "on some intents first")
    _print(books, account)


async def _books(url: str, account: str) -> dict[str, Any] | None:
    from memory.database import create_engine
    from memory.ledger import LedgerStore

    engine = create_engine(url)
    try:
        state = await LedgerStore(engine).state(account)
    finally:
        await engine.dispose()
    return None if state is None else state.state


def _print(books: dict[str, Any], account: str) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    totals = Table(title="Paper account" if account == "paper" else f"Account {account}")
    for column in ("asset", "equity", "cash", "realised P/L", "unrealised P/L", "fees paid"):
        totals.add_column(column, justify="left" if column == "asset" else "right")
    for asset, row in books["assets"].items():
        totals.add_row(asset, *(money(row[k]) for k in ("equity", "cash", "realised_pnl", "unrealised_pnl",
                                                        "fees_paid")))
    positions = Table(title="Positions")
    for column in ("symbol", "quantity", "average cost", "mark", "realised P/L"):
        positions.add_column(column, justify="left" if column == "symbol" else "right")
    for symbol, row in books["positions"].items():
        positions.add_row(symbol, plain(row["quantity"]), plain(row["average_cost"]), plain(row["mark"]),
                          money(row["realised_pnl"]))
    console.print(totals)
    console.print(positions)
    console.print("amounts to the cent for display; Postgres keeps the exact books")

