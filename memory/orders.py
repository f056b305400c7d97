"""Orders in Postgres: every transition (append-only), every fill, and each order's latest state.

Writes are idempotent on natural keys — (client order id, seq) for a transition, the trade id
for a fill, the client order id for an order — so an agent that handles a message again after
a restart, or a replay, stores nothing twice. An order's row only ever moves forward: a write
carrying an older `seq` than the stored one leaves it alone. There are no foreign keys between
the tables, so a consumer of `execution.reports` may store fills before it sees the order.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from memory.database import translate_errors
from memory.models import OrderFillRow, OrderRow, OrderTransitionRow
from topics.orders import OrderEvent, OrderFilled, OrderStatus, OrderUpdated

OPEN_STATUSES: tuple[OrderStatus, ...] = ("new", "submitted", "partially_filled")


ROWS_PER_STATEMENT = 1000  # Postgres takes at most 32,767 bound parameters per statement


def chunked(rows: list[dict[str, Any]], size: int = ROWS_PER_STATEMENT) -> list[list[dict[str, Any]]]:
    """`rows` in statement-sized slices."""
    return [rows[i : i + size] for i in range(0, len(rows), size)]


class OrderStore:
    """Reads and writes `orders`, `order_transitions` and `order_fills` on an async engine."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def record(self, events: Iterable[OrderEvent]) -> int:
        """Store the events in one transaction; how many transitions and fills were new."""
        updates = [e for e in events if isinstance(e, OrderUpdated)]
        fills = [e for e in events if isinstance(e, OrderFilled)]
        stored = 0
        async with self._begin() as conn:
            if updates:
                stored += await self._record_updates(conn, updates)
            for chunk in chunked([_fill_row(fill) for fill in fills]):
                statement = insert(OrderFillRow).values(chunk)
                statement = statement.on_conflict_do_nothing(index_elements=["trade_id"])
                stored += len((await conn.execute(statement.returning(OrderFillRow.trade_id))).all())
        return stored

    @staticmethod
    async def _record_updates(conn: AsyncConnection, updates: list[OrderUpdated]) -> int:
        new = 0
        for chunk in chunked([_transition_row(u) for u in updates]):
            transitions = insert(OrderTransitionRow).values(chunk)
            transitions = transitions.on_conflict_do_nothing(index_elements=["client_order_id", "seq"])
            new += len((await conn.execute(transitions.returning(OrderTransitionRow.seq))).all())
        latest: dict[str, OrderUpdated] = {}
        created: dict[str, int] = {}
        for update in updates:
            cid = update.client_order_id
            created[cid] = min(created.get(cid, update.ts_event), update.ts_event)
            if cid not in latest or update.seq > latest[cid].seq:
                latest[cid] = update
        rows = [_order_row(update, created[cid]) for cid, update in latest.items()]
        for chunk in chunked(rows):
            upsert = insert(OrderRow).values(chunk)
            forward = {
                name: upsert.excluded[name]
                for name in ("status", "quantity", "filled_quantity", "seq", "updated_ts", "state")
            }
            await conn.execute(upsert.on_conflict_do_update(
                index_elements=["client_order_id"], set_=forward, where=OrderRow.seq < upsert.excluded.seq
            ))
        return new

    async def get(self, client_order_id: str) -> OrderUpdated | None:
        """The latest state of the order, or None if it was never stored."""
        async with self._begin() as conn:
            state = (await conn.execute(
                select(OrderRow.state).where(OrderRow.client_order_id == client_order_id)
            )).scalar_one_or_none()
        return None if state is None else OrderUpdated.model_validate(state)

    async def transitions(self, client_order_id: str) -> list[OrderUpdated]:
        """Every stored change of the order, in order."""
        statement = (
            select(OrderTransitionRow.event)
            .where(OrderTransitionRow.client_order_id == client_order_id)
            .order_by(OrderTransitionRow.seq)
        )
        async with self._begin() as conn:
            return [OrderUpdated.model_validate(e) for e in (await conn.execute(statement)).scalars()]

    async def fills(self, client_order_id: str) -> list[OrderFilled]:
        """Every stored fill of the order, oldest first."""
        statement = (
            select(OrderFillRow.event)
            .where(OrderFillRow.client_order_id == client_order_id)
            .order_by(OrderFillRow.ts, OrderFillRow.trade_id)
        )
        async with self._begin() as conn:
            return [OrderFilled.model_validate(e) for e in (await conn.execute(statement)).scalars()]

    async def open_orders(self, exchange: str | None = None) -> list[OrderUpdated]:
        """Orders not yet terminal (new, submitted, partially filled), oldest first: what a
        restarting execution agent reconciles with its venue."""
        statement = select(OrderRow.state).where(OrderRow.status.in_(OPEN_STATUSES))
        if exchange is not None:
            statement = statement.where(OrderRow.exchange == exchange)
        statement = statement.order_by(OrderRow.created_ts, OrderRow.client_order_id)
        async with self._begin() as conn:
            return [OrderUpdated.model_validate(s) for s in (await conn.execute(statement)).scalars()]

    @asynccontextmanager
    async def _begin(self) -> AsyncIterator[AsyncConnection]:
        """One transaction; a server that is away raises `RetriableError` (see memory.database)."""
        with translate_errors():
            async with self.engine.begin() as conn:
                yield conn


def _order_row(update: OrderUpdated, created_ts: int) -> dict[str, object]:
    return {
        "client_order_id": update.client_order_id, "decision_id": update.decision_id,
        "exchange": update.exchange, "symbol": update.symbol, "side": update.side,
        "order_type": update.order_type, "status": update.status, "quantity": update.quantity,
        "filled_quantity": update.filled_quantity, "seq": update.seq, "created_ts": created_ts,
        "updated_ts": update.ts_event, "state": update.model_dump(mode="json"),
    }


def _transition_row(update: OrderUpdated) -> dict[str, object]:
    return {
        "client_order_id": update.client_order_id, "seq": update.seq, "ts": update.ts_event,
        "from_status": update.previous_status, "to_status": update.status, "reasons": update.reasons,
        "event": update.model_dump(mode="json"),
    }


def _fill_row(fill: OrderFilled) -> dict[str, object]:
    return {
        "trade_id": fill.trade_id, "client_order_id": fill.client_order_id, "exchange": fill.exchange,
        "symbol": fill.symbol, "side": fill.side, "price": fill.price, "quantity": fill.quantity,
        "fee": fill.fee, "fee_asset": fill.fee_asset, "liquidity": fill.liquidity, "ts": fill.ts_event,
        "event": fill.model_dump(mode="json"),
    }
