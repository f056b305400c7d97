"""`cryptiq pnl`: an account's books (paper by default) as the execution agent last stored them."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import typer

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
        totals.add_row(asset, *(_money(row[k]) for k in ("equity", "cash", "realised_pnl", "unrealised_pnl",
                                                        "fees_paid")))
    positions = Table(title="Positions")
    for column in ("symbol", "quantity", "average cost", "mark", "realised P/L"):
        positions.add_column(column, justify="left" if column == "symbol" else "right")
    for symbol, row in books["positions"].items():
        positions.add_row(symbol, _plain(row["quantity"]), _plain(row["average_cost"]), _plain(row["mark"]),
                          _money(row["realised_pnl"]))
    console.print(totals)
    console.print(positions)
    console.print("amounts to the cent for display; Postgres keeps the exact books")


def _money(value: str | None) -> str:
    """An amount to the cent, with thousands separators (the books keep every digit)."""
    return "-" if value is None else f"{Decimal(value):,.2f}"


def _plain(value: str | None) -> str:
    """A quantity or price as booked, without exponent or trailing zeros (0E-8 is 0)."""
    if value is None:
        return "-"
    number = Decimal(value)
    return "0" if number == 0 else f"{number.normalize():f}"
