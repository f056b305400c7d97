"""`cryptiq agent execution` killed (SIGKILL) after it sent an order to the paper venue but before it
committed its offset: the restarted process reads the decision again, recognises it, publishes the
same events again (same event ids) and does not send the order a second time.

The first process commits only every 60 s, so it is certainly killed before its commit; the
"sent" moment is observed from outside, as the order's `submitted` change on `orders`.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid
from collections import defaultdict
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
from execution_data import real_candles

from agents.execution import ExecutionAgent
from busio import Tail, end_offsets, produce, skip_history
from config import Settings
from execution.order import client_order_id
from execution.paper_account import ACCOUNT
from infra import Endpoints
from memory.database import create_engine
from memory.ledger import LedgerStore
from memory.orders import OrderStore
from topics.envelope import Envelope
from topics.registry import EXECUTION_REPORTS, MARKET_CANDLES, ORDERS, RISK_DECISIONS
from topics.trading import PortfolioSnapshot, RiskDecision

CRYPTIQ = Path(sys.executable).with_name("cryptiq")
SIZE = Decimal("0.5")


def start_agent(settings: Settings, log: Path, **env: str) -> subprocess.Popen[bytes]:
    variables = dict(os.environ, CRYPTIQ_HOME=str(settings.home), CRYPTIQ_LOG_FORMAT="json",
                     CRYPTIQ_LOG_LEVEL="INFO", **env)
    with log.open("ab") as out:
        return subprocess.Popen([str(CRYPTIQ), "agent", "execution"], env=variables, stdout=out, stderr=out)


def log_events(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]


async def wait_logged(log: Path, event: str, count: int, timeout: float = 60.0) -> bool:
    for _ in range(int(timeout / 0.1)):
        if sum(e.get("event") == event for e in log_events(log)) >= count:
            return True
        await asyncio.sleep(0.1)
    return False


def ours(records: list[Any], symbol: str) -> list[dict[str, Any]]:
    return [orjson.loads(r.value) for r in records if symbol in r.key.decode()]


async def test_a_killed_execution_agent_restarts_without_sending_the_order_again(
    settings: Settings, endpoints: Endpoints, kafka: dict[str, Any], tmp_path: Path
) -> None:
    symbol = f"C{uuid.uuid4().hex[:8].upper()}/USDT"
    bars = [c.model_copy(update={"symbol": symbol}) for c in real_candles("BTC/USDT", 100, 6)]
    candles = [Envelope.create(c, key=c.key, ts=c.close_time, source="test") for c in bars]
    payload = RiskDecision(
        decision_id=f"{symbol}-d1", strategy="t", exchange="binance", symbol=symbol, side="buy",
        entry_type="market", entry_price=Decimal(repr(bars[0].open)), verdict="approved", size=SIZE,
        risk_amount=Decimal("100"), reasons=["test"],
        portfolio=PortfolioSnapshot(ts=bars[0].open_time, equity=Decimal("100000")),
    )
    decision = Envelope.create(payload, key=payload.key, ts=bars[0].open_time, source="test")
    cid = client_order_id(payload.decision_id)
    await skip_history(kafka, ExecutionAgent.name, ExecutionAgent.consumes)
    orders_start = await end_offsets(kafka, ORDERS.name)
    fills_start = await end_offsets(kafka, EXECUTION_REPORTS.name)
    log = tmp_path / "execution.log"

    async with Tail(kafka, ORDERS.name, orders_start) as orders, \
            Tail(kafka, EXECUTION_REPORTS.name, fills_start) as fills:
        first = start_agent(settings, log, CRYPTIQ_AGENTS_COMMIT_INTERVAL_S="60")
        second: subprocess.Popen[bytes] | None = None
        try:
            assert await wait_logged(log, "agent ready", 1), log.read_text()[-3000:]
            await produce(kafka, RISK_DECISIONS.name, [decision])
            assert await orders.wait_for(
                lambda got: any(b["payload"]["status"] == "submitted" for b in ours(got, symbol))
            ), log.read_text()[-3000:]
            first.send_signal(signal.SIGKILL)  # sent, published, not committed
            assert first.wait(30) == -signal.SIGKILL

            second = start_agent(settings, log)
            assert await wait_logged(log, "agent ready", 2), log.read_text()[-3000:]
            assert await wait_logged(log, "outputs_published_again", 1), log.read_text()[-3000:]
            await produce(kafka, MARKET_CANDLES.name, candles)
            assert await fills.wait_for(
                lambda got: sum(Decimal(b["payload"]["quantity"]) for b in ours(got, symbol)) >= SIZE
            ), log.read_text()[-3000:]
            await asyncio.sleep(1.0)  # room for a wrong second order to show up
            second.send_signal(signal.SIGTERM)  # drains, checkpoints to Postgres, commits
            assert second.wait(30) == 0, log.read_text()[-3000:]
        finally:
            for process in (first, second):
                if process is not None and process.poll() is None:
                    process.kill()

    placed = [e for e in log_events(log) if e.get("event") == "order_placed" and e["client_order_id"] == cid]
    assert len(placed) == 1, placed  # the venue was asked once, by the first process

    # On `orders`, a change published twice is the same event (same id), never a second order.
    updates = list(ours(orders.records, symbol))
    assert {b["payload"]["client_order_id"] for b in updates} == {cid}
    ids_per_change: dict[tuple[int, str], set[str]] = defaultdict(set)
    for body in updates:
        ids_per_change[(body["payload"]["seq"], body["payload"]["status"])].add(body["event_id"])
    assert all(len(ids) == 1 for ids in ids_per_change.values()), ids_per_change
    seqs = sorted(seq for seq, _ in ids_per_change)
    assert seqs == list(range(len(seqs)))  # one change per seq
    assert [status for (seq, status) in sorted(ids_per_change) if seq < 2] == ["new", "submitted"]
    assert sum(Decimal(b["payload"]["quantity"]) for b in ours(fills.records, symbol)) == SIZE

    engine = create_engine(endpoints.postgres_url)
    try:
        store = OrderStore(engine)
        stored = await store.get(cid)
        transitions = await store.transitions(cid)
        stored_fills = await store.fills(cid)
        books = await LedgerStore(engine).state(ACCOUNT)
    finally:
        await engine.dispose()
    assert stored is not None
    assert stored.status == "filled"
    assert [t.seq for t in transitions] == list(range(len(transitions)))
    assert [t.status for t in transitions].count("submitted") == 1
    assert sum(f.quantity for f in stored_fills) == SIZE
    assert books is not None
    assert Decimal(books.state["positions"][symbol]["quantity"]) == SIZE
    usdt = books.state["assets"]["USDT"]
    left = Decimal(usdt["equity"]) + Decimal(usdt["fees_paid"])
    right = Decimal(usdt["net_deposits"]) + Decimal(usdt["realised_pnl"]) + Decimal(usdt["unrealised_pnl"])
    assert left == right  # the ledger is consistent: value conserved
