"""The market_data source agent on the real broker: candles, dead letters and gap alerts, once."""

from __future__ import annotations

import base64
import uuid
from pathlib import Path
from typing import Any

import orjson
import pandas as pd

from agents.market_data.agent import MarketDataAgent, store_dir
from agents.market_data.files import bundled_candles, read_raw_candles
from agents.runtime import SourceHost
from busio import collect, end_offsets
from config import Settings
from infra import Endpoints
from memory.ports import InMemoryStateStore
from topics.registry import ALERTS, DEADLETTER, MARKET_CANDLES

ROWS = 120


def messy_store(settings: Settings, symbol: str) -> pd.DataFrame:
    """A real slice with a gap of 3, one bad price and one exact duplicate, dropped into the store."""
    btc = next(s for s in bundled_candles() if s.symbol == "BTC/USDT")
    frame = read_raw_candles(btc.path).iloc[:ROWS].drop(columns=["symbol"]).reset_index(drop=True)
    frame.loc[40, "low"] = -1.0                      # rejected: non-positive price
    frame = frame.drop(index=[60, 61, 62])           # a gap of 3 candles
    frame = pd.concat([frame, frame.iloc[[10]]])     # an exact duplicate, out of order too
    path = store_dir(settings) / "testex" / symbol.replace("/", "-") / "1h.parquet"
    path.parent.mkdir(parents=True)
    frame.to_parquet(path, index=False)
    return frame


async def run_source(
    settings: Settings, endpoints: Endpoints, store: InMemoryStateStore, *, from_start: bool = False
) -> SourceHost:
    host = SourceHost(
        lambda deps: MarketDataAgent.from_settings(deps, settings), "market_data", settings, endpoints,
        store=store, from_start=from_start,
    )
    await host.start()
    try:
        await host.done.wait()
    finally:
        await host.stop()
    return host


def payloads(records: list[Any], key: str) -> list[dict[str, Any]]:
    return [orjson.loads(r.value)["payload"] for r in records if key in r.key.decode()]


async def test_replays_files_through_the_quality_gate_and_resumes_without_republishing(
    settings: Settings, endpoints: Endpoints, kafka: dict[str, Any], tmp_path: Path,
) -> None:
    symbol = f"Q{uuid.uuid4().hex[:6].upper()}/USDT"
    local = settings.model_copy(update={
        "home": tmp_path, "market": settings.market.model_copy(update={"symbols": [symbol]}),
    })
    messy_store(local, symbol)
    topics = (MARKET_CANDLES, DEADLETTER, ALERTS)
    starts = {topic.name: await end_offsets(kafka, topic.name) for topic in topics}
    store = InMemoryStateStore()

    first = await run_source(local, endpoints, store)
    accepted = ROWS - 3 - 1  # minus the gap, minus the bad price (the duplicate is dropped)
    assert first.published[MARKET_CANDLES.name] == accepted
    assert first.error is None

    key = f"testex:{symbol}:1h"
    candles = await collect(kafka, MARKET_CANDLES.name, start=starts[MARKET_CANDLES.name],
                            until=lambda got: len(payloads(got, key)) >= accepted)
    mine = payloads(candles, key)
    assert len(mine) == accepted
    opens = [c["open_time"] for c in mine]
    assert opens == sorted(set(opens))                                   # ordered, no duplicates
    assert all(c["close_time"] - c["open_time"] == 3_600_000 for c in mine)

    letters = await collect(kafka, DEADLETTER.name, start=starts[DEADLETTER.name],
                            until=lambda got: any(symbol in base64.b64decode(p.get("key") or "").decode()
                                                  for p in payloads(got, "source:")))
    bad = [p for p in payloads(letters, "source:") if symbol in base64.b64decode(p["key"]).decode()]
    assert len(bad) == 1
    assert "non-positive price" in bad[0]["reason"]
    assert orjson.loads(base64.b64decode(bad[0]["value"]))["low"] == -1.0

    alerts = await collect(kafka, ALERTS.name, start=starts[ALERTS.name],
                           until=lambda got: any(p.get("symbol") == symbol for p in payloads(got, key)))
    gaps = [p for p in payloads(alerts, key) if p.get("symbol") == symbol]
    # The rejected candle leaves a hole of 1 in the stream; the dropped rows one of 3.
    assert [(g["name"], g["details"]["missing"]) for g in gaps] == [("data_gap", 1), ("data_gap", 3)]

    second = await run_source(local, endpoints, store)  # a restart with the saved progress
    assert sum(second.published.values()) == 0
    again = await run_source(local, endpoints, store, from_start=True)  # `cryptiq run --from-start`
    assert again.published == first.published
