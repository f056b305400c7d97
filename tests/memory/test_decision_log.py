"""The decision log and its migrations on the session's real Postgres, in a fresh database."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from pgtools import fresh_database, with_database
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from config.errors import ConfigError, RetriableError
from infra import Endpoints
from infra.process import free_port
from memory.database import create_engine
from memory.decision_log import DecisionLog, DecisionRecord
from memory.migrations import current_revision, head_revision, upgrade


async def test_upgrade_creates_the_tables_and_is_idempotent(fresh_db: str, engine: AsyncEngine) -> None:
    assert await current_revision(fresh_db) == head_revision()
    await upgrade(fresh_db)  # again: nothing to do, no error
    await asyncio.gather(upgrade(fresh_db), upgrade(fresh_db))  # concurrent callers take turns
    assert await current_revision(fresh_db) == head_revision()
    async with engine.connect() as conn:
        tables = set((await conn.execute(text(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        ))).scalars())
    assert {"agent_decisions", "audit_log", "alembic_version"} <= tables


async def test_concurrent_first_upgrades_of_an_empty_database_both_succeed(endpoints: Endpoints) -> None:
    async with fresh_database(endpoints.postgres_url) as url:
        assert await current_revision(url) is None
        await asyncio.gather(upgrade(url), upgrade(url), upgrade(url))
        assert await current_revision(url) == head_revision()


async def test_the_models_match_what_the_migrations_create(engine: AsyncEngine) -> None:
    # A column added to memory/models.py without a revision (or the reverse) fails here.
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from memory.models import all_tables

    async with engine.connect() as conn:
        differences = await conn.run_sync(
            lambda sync: compare_metadata(MigrationContext.configure(sync), all_tables())
        )
    assert differences == []


async def test_a_postgres_that_does_not_answer_is_a_retriable_error() -> None:
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/cryptiq"
    with pytest.raises(RetriableError, match="postgres unreachable while migrating"):
        await upgrade(url)
    with pytest.raises(RetriableError, match="postgres unreachable"):
        await current_revision(url)
    engine = create_engine(url)
    try:
        with pytest.raises(RetriableError, match="postgres unreachable"):
            await DecisionLog(engine).get("any")
    finally:
        await engine.dispose()


async def test_a_database_that_does_not_exist_is_a_config_error(endpoints: Endpoints) -> None:
    url = with_database(endpoints.postgres_url, f"cryptiq_missing_{uuid.uuid4().hex[:10]}")
    with pytest.raises(ConfigError, match=r"does not exist; check postgres\.url"):
        await upgrade(url)


def decision(i: int, **changes: object) -> DecisionRecord:
    values: dict[str, object] = {
        "id": f"dec-{i}", "agent": "technical", "symbol": "BTC/USDT", "ts": 1_000 * i, "kind": "signal",
        "input_ids": [f"in-{i}"], "output_ids": [f"out-{i}"], "reasons": [{"rule": "ema_cross_up"}],
        "trace": {"ema20": 101.5, "ema50": 100.25},
    }
    values.update(changes)
    return DecisionRecord.model_validate(values)


async def test_record_is_idempotent_on_the_decision_id(engine: AsyncEngine) -> None:
    log = DecisionLog(engine)
    first = decision(1, id="idem-1")
    assert await log.record(first) is True
    assert await log.record(first.model_copy(update={"reasons": ["changed"]})) is False
    stored = await log.get("idem-1")
    assert stored == first
    assert await log.record_many([first, decision(2, id="idem-2")]) == 1


async def test_query_filters_by_agent_symbol_and_time_oldest_first(engine: AsyncEngine) -> None:
    log = DecisionLog(engine)
    rows = [
        decision(30, id="q-30", agent="risk", symbol="ETH/USDT"),
        decision(10, id="q-10", agent="risk", symbol="ETH/USDT"),
        decision(20, id="q-20", agent="risk", symbol="BTC/USDT"),
        decision(40, id="q-40", agent="execution", symbol="ETH/USDT"),
    ]
    assert await log.record_many(rows) == 4
    assert [d.id for d in await log.query(agent="risk")] == ["q-10", "q-20", "q-30"]
    assert [d.id for d in await log.query(agent="risk", symbol="ETH/USDT")] == ["q-10", "q-30"]
    assert [d.id for d in await log.query(symbol="ETH/USDT", since_ts=20_000, until_ts=40_000)] == [
        "q-30", "q-40",
    ]
    assert [d.id for d in await log.query(agent="risk", limit=1)] == ["q-10"]


async def test_outcomes_link_back_to_their_decision(engine: AsyncEngine) -> None:
    log = DecisionLog(engine)
    await log.record(decision(50, id="o-50"))
    assert await log.link_outcome("o-50", {"pnl": "12.50", "closed_at": 90_000}) is True
    stored = await log.get("o-50")
    assert stored is not None
    assert stored.outcome == {"pnl": "12.50", "closed_at": 90_000}
    assert await log.link_outcome("no-such-decision", {"pnl": "0"}) is False
    assert await log.get("no-such-decision") is None


async def test_many_outcomes_link_in_one_statement_and_the_last_for_an_id_wins(engine: AsyncEngine) -> None:
    log = DecisionLog(engine)
    assert await log.record_many([decision(60 + i, id=f"m-{i}") for i in range(3)]) == 3
    linked = await log.link_outcomes([
        ("m-0", {"status": "filled", "pnl": "1.5"}), ("m-1", {"status": "rejected"}), ("m-missing", {"x": 1}),
        ("m-0", {"status": "filled", "pnl": "2.5", "fills": [1, 2]}),
    ])
    assert linked == 2  # m-0 and m-1; m-missing is no decision
    assert [(await log.get(f"m-{i}")).outcome for i in range(3)] == [  # type: ignore[union-attr]
        {"status": "filled", "pnl": "2.5", "fills": [1, 2]}, {"status": "rejected"}, None,
    ]
    assert await log.link_outcomes([]) == 0
