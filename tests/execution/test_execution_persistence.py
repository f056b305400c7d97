"""Orders, transitions, fills and the ledger in the session's real Postgres, in a fresh database:
round trips, idempotent writes, append-only history."""

from __future__ import annotations

from decimal import Decimal

import pytest
from execution_data import BTC, ETH, D, dec, real_candles, request
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from execution.ledger import Ledger, LedgerEntry, Transfer, entry_from_record, entry_record
from execution.order import create_order
from execution.paper_gateway import PaperVenue
from memory.ledger import LedgerRecord, LedgerState, LedgerStore
from memory.migrations import current_revision, head_revision
from memory.orders import OrderStore
from topics.orders import OrderEvent, OrderFilled, OrderUpdated

C = real_candles("BTC/USDT", start=100, count=8)
T0 = C[0].close_time


async def traded(decision_id: str) -> tuple[PaperVenue, list[OrderEvent]]:
    """A paper market order's whole life — created, submitted, filled in parts — as events."""
    paper = PaperVenue("binance", [BTC, ETH], balances={"USDT": D("1000000")})
    cap = BTC.floor_quantity(dec(C[1].volume) * paper.config.max_participation)
    order, events = create_order(request(decision_id=decision_id, quantity=cap + D("0.5")), BTC, now=T0)
    events += await paper.place(order, now=T0)
    for candle in C:
        events += paper.on_candle(candle)
    return paper, events


async def test_the_migrations_create_the_order_and_ledger_tables(fresh_db: str, engine: AsyncEngine) -> None:
    assert await current_revision(fresh_db) == head_revision()
    async with engine.connect() as conn:
        tables = set((await conn.execute(text(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        ))).scalars())
    assert {"orders", "order_transitions", "order_fills", "ledger_entries", "ledger_state"} <= tables


async def test_transitions_and_fills_round_trip_and_writing_twice_stores_once(engine: AsyncEngine) -> None:
    store = OrderStore(engine)
    _, events = await traded("persist-1")
    updates = [e for e in events if isinstance(e, OrderUpdated)]
    fills = [e for e in events if isinstance(e, OrderFilled)]
    assert [u.status for u in updates] == ["new", "submitted", "partially_filled", "filled"]
    assert await store.record(events) == len(updates) + len(fills)
    assert await store.record(events) == 0  # replayed: nothing new
    cid = updates[0].client_order_id
    assert await store.transitions(cid) == updates
    assert await store.fills(cid) == fills
    assert await store.get(cid) == updates[-1]
    assert await store.get("cq-unknown") is None


async def test_an_older_state_never_overwrites_a_newer_one(engine: AsyncEngine) -> None:
    store = OrderStore(engine)
    _, events = await traded("persist-2")
    updates = [e for e in events if isinstance(e, OrderUpdated)]
    cid = updates[0].client_order_id
    assert await store.record(updates[:2]) == 2
    assert [o.client_order_id for o in await store.open_orders("binance")] == [cid]
    await store.record(events)
    assert cid not in [o.client_order_id for o in await store.open_orders()]
    await store.record(updates[:1])  # a late duplicate of the creation
    latest = await store.get(cid)
    assert latest is not None
    assert latest.status == "filled"


async def test_a_rejected_bad_order_is_kept_with_its_reasons_and_its_nan(engine: AsyncEngine) -> None:
    store = OrderStore(engine)
    _, events = create_order(request(decision_id="persist-nan", quantity=Decimal("NaN")), BTC, now=T0)
    assert await store.record(events) == 2
    stored = await store.get(events[0].client_order_id)  # type: ignore[union-attr]
    assert stored is not None
    assert stored.status == "rejected"
    assert stored.quantity.is_nan()
    assert stored.reasons == ["quantity must be a finite number, got NaN"]


async def test_history_tables_are_append_only(engine: AsyncEngine) -> None:
    store = OrderStore(engine)
    order, events = create_order(request(decision_id="persist-append"), BTC, now=T0)
    await store.record(events)
    for statement in (
        "UPDATE order_transitions SET to_status = 'filled' WHERE client_order_id = :cid",
        "DELETE FROM order_transitions WHERE client_order_id = :cid",
    ):
        with pytest.raises(DBAPIError, match="order_transitions is append-only"):
            async with engine.begin() as conn:
                await conn.execute(text(statement), {"cid": order.client_order_id})
    assert len(await store.transitions(order.client_order_id)) == 1


async def test_the_ledger_round_trips_through_its_entries_and_state(engine: AsyncEngine) -> None:
    ledgers = LedgerStore(engine)
    paper, events = await traded("persist-ledger")
    entries: list[LedgerEntry] = [
        Transfer(transfer_id="paper-initial-USDT", asset="USDT", amount=D("1000000"), ts_event=0),
        *(e for e in events if isinstance(e, OrderFilled)),
    ]
    ledger = Ledger.from_entries(entries)
    ledger.mark_candle(C[-1])
    assert ledger.snapshot() == paper.ledger.snapshot()  # the venue booked exactly its fills
    records = [LedgerRecord.model_validate(entry_record(e)) for e in entries]
    state = LedgerState(version=ledger.version, ts=ledger.ts, state=ledger.snapshot())
    assert await ledgers.append("paper", records, state=state) == len(records)
    assert await ledgers.append("paper", records, state=state) == 0
    stored = await ledgers.entries("paper")
    assert [r.entry_id for r in stored] == [r.entry_id for r in records]
    replayed = Ledger.from_entries(entry_from_record(r.kind, r.payload) for r in stored)
    replayed.mark_candle(C[-1])
    assert replayed.snapshot() == ledger.snapshot()
    # an older state written late (a replay catching up) leaves the newer one in place
    await ledgers.append("paper", records[:1], state=LedgerState(version=1, ts=0, state={"old": True}))
    kept = await ledgers.state("paper")
    assert kept is not None
    assert (kept.version, kept.ts, kept.state) == (ledger.version, ledger.ts, ledger.snapshot())
    assert await ledgers.state("nobody") is None
    assert await ledgers.entries("nobody") == []
