"""market_data -> scanner on the real broker, and `cryptiq scan` reading the result."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson

from agents.market_data.agent import MarketDataAgent, store_dir
from agents.market_data.files import bundled_candles, read_raw_candles
from agents.runtime import AgentHost, SourceHost
from agents.scanner import ScannerAgent
from busio import collect, end_offsets
from config import Settings
from infra import Endpoints
from memory.ports import InMemoryStateStore
from topics.registry import ALERTS, MARKET_SCAN

CRYPTIQ = Path(sys.executable).with_name("cryptiq")
SYMBOLS = ["BTC/USDT", "ETH/USDT"]


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CRYPTIQ), *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def four_hour_store(settings: Settings) -> int:
    """Real 1h candles aggregated to 4h (first open, max high, min low, last close, summed volume)."""
    count = 0
    for source in bundled_candles():
        if source.symbol not in SYMBOLS:
            continue
        hourly = read_raw_candles(source.path).iloc[: 4 * 500]
        hourly["bucket"] = hourly["open_time"] // (4 * 3_600_000) * (4 * 3_600_000)
        four = hourly.groupby("bucket").agg(
            open=("open", "first"), high=("high", "max"), low=("low", "min"), close=("close", "last"),
            volume=("volume", "sum"),
        ).reset_index().rename(columns={"bucket": "open_time"})
        path = store_dir(settings) / "binance" / source.symbol.replace("/", "-") / "4h.parquet"
        path.parent.mkdir(parents=True)
        four.to_parquet(path, index=False)
        count += len(four)
    return count


async def test_scanner_snapshots_and_alerts_from_replayed_real_candles(
    settings: Settings, endpoints: Endpoints, kafka: dict[str, Any], tmp_path: Path,
) -> None:
    local = settings.model_copy(update={
        "home": tmp_path,
        "market": settings.market.model_copy(update={"symbols": SYMBOLS, "timeframes": ["4h"]}),
        "scanner": settings.scanner.model_copy(update={"snapshot_every": "1d"}),
    })
    total = four_hour_store(local)
    scan_start = await end_offsets(kafka, MARKET_SCAN.name)
    alert_start = await end_offsets(kafka, ALERTS.name)

    scanner = AgentHost(ScannerAgent, local, endpoints, store=InMemoryStateStore())
    await scanner.start()
    try:
        await scanner.wait_ready(30)
        source = SourceHost(lambda deps: MarketDataAgent.from_settings(deps, local), "market_data", local,
                            endpoints, store=InMemoryStateStore())
        await source.start()
        await source.done.wait()
        await source.stop()
        for _ in range(300):  # until the scanner has handled every candle we published
            if scanner.dispatcher is not None and scanner.idle and scanner.lag() == 0:
                break
            await asyncio.sleep(0.1)
        last_close = max(
            read_raw_candles(path)["open_time"].max() for path in store_dir(local).glob("*/*/4h.parquet")
        ) + 4 * 3_600_000
        last_day = last_close // 86_400_000 * 86_400_000

        def mine(got: list[Any]) -> list[dict[str, Any]]:
            bodies = [orjson.loads(r.value) for r in got]
            return [b["payload"] for b in bodies if b["key"] == "scan:4h"]

        scans = await collect(kafka, MARKET_SCAN.name, start=scan_start,
                              until=lambda got: any(p["as_of"] >= last_day for p in mine(got)))
    finally:
        await scanner.stop()

    snapshots = mine(scans)
    assert snapshots, "no snapshot"
    final = snapshots[-1]
    assert last_day <= final["as_of"] <= last_close  # the first candle past the last day boundary
    assert {row["symbol"] for row in final["rows"]} == set(SYMBOLS)
    assert [row["rank"] for row in final["rows"]] == [1, 2]
    assert scanner.dispatcher is not None
    assert scanner.dispatcher.stats.processed >= total

    alerts = await collect(kafka, ALERTS.name, start=alert_start, until=lambda got: len(got) > 0)
    names = {orjson.loads(r.value)["payload"]["name"] for r in alerts}
    assert names & {"scanner.bb_breakout_up", "scanner.bb_breakout_down", "scanner.volume_spike"}

    env = dict(os.environ, CRYPTIQ_HOME=str(settings.home), CRYPTIQ_LOG_LEVEL="WARNING")
    shown = await asyncio.to_thread(run_cli, "scan", "--timeframe", "4h", "--json", env=env)
    assert shown.returncode == 0, shown.stderr
    (printed,) = json.loads(shown.stdout)
    assert printed["as_of"] == final["as_of"]
    assert printed["rows"] == final["rows"]

    table = await asyncio.to_thread(run_cli, "scan", "--timeframe", "4h", env=env)
    assert table.returncode == 0
    assert "BTC/USDT" in table.stdout
    missing = await asyncio.to_thread(run_cli, "scan", "--timeframe", "3w", env=env)
    assert missing.returncode == 2
    assert missing.stderr.startswith("error: no market scan for timeframe 3w")
