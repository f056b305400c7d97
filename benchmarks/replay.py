"""Replay throughput: a month of 1-minute candles for 10 streams through market_data -> an agent.

    python benchmarks/replay.py [--quick] [--agent scanner|echo]

Candles: the last 43,200 one-minute candles (one month) of BTC, ETH, SOL, XRP, DOGE and ADA on
Binance spot and ADA, DOGE and DOT on Bybit linear, plus three weeks of BTC/USDT on Binance.US,
from ../shared/datasets (419,040 candles; `--quick` takes the last 4,320 of each). They are put
in the candle store of a temporary CRYPTIQ_HOME, with embedded servers, and then measured:

- `replay_into_broker`: the market_data agent (quality gate, envelopes, encoding, batched
  publishing) replaying the store at max speed, in events/s; reference: plain aiokafka producing
  the same pre-encoded messages.
- `replay_end_to_end`: from the start of the replay until the consuming agent (in its own
  process) has processed the last candle; reference: plain aiokafka producing them while a plain
  aiokafka consumer reads them back.
- `replay_seconds_for_432k`: the end-to-end time scaled to 432,000 events (issue target: < 60 s).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

import infra
from agents.logs import configure_logging
from agents.market_data.agent import MarketDataAgent, store_dir
from agents.market_data.files import read_candles, shared_datasets
from agents.runtime import SourceHost
from config import Settings, load_settings
from memory.ports import InMemoryStateStore
from topics.admin import ensure_topics
from topics.envelope import Envelope
from topics.market import CandleClosed
from topics.recording import log_end_offsets
from topics.registry import MARKET_CANDLES
from topics.serialization import encode, headers

OHLCV = shared_datasets() / "ohlcv"
MONTH = 43_200
STREAMS = [
    *[("binance", f"{b}/USDT", f"binance_spot_1m_2023-03_2023-05/{b}_USDT-1m.csv.gz")
      for b in ("BTC", "ETH", "SOL", "XRP", "DOGE", "ADA")],
    *[("bybit", f"{b}/USDT", f"bybit_linear_1m/{b}USDT_1m.csv.gz") for b in ("ADA", "DOGE", "DOT")],
    ("binanceus", "BTC/USDT", "binanceus_1m_2023-03/BTCUSDT_1m_20230301_20230321.csv.gz"),
]


def build_store(settings: Settings, rows: int) -> int:
    """Write the benchmark's candles into the store; how many there are."""
    total = 0
    for exchange, symbol, relative in STREAMS:
        frame = read_candles(OHLCV / relative, timeframe="1m").iloc[-rows:]
        target = store_dir(settings) / exchange / symbol.replace("/", "-") / "1m.parquet"
        target.parent.mkdir(parents=True, exist_ok=True)
        frame.drop(columns=["symbol"], errors="ignore").to_parquet(target, index=False)
        total += len(frame)
    return total


def encoded_candles(settings: Settings) -> list[tuple[bytes, bytes, int, list[tuple[str, bytes]]]]:
    """The same candles as the agent publishes them, encoded ahead of time for the reference."""
    out = []
    for path in sorted(store_dir(settings).glob("*/*/1m.parquet")):
        exchange, symbol = path.parent.parent.name, path.parent.name.replace("-", "/")
        frame = read_candles(path, timeframe="1m")
        for row in frame.itertuples(index=False):
            candle = CandleClosed(
                exchange=exchange, symbol=symbol, timeframe="1m", open_time=int(row.open_time),
                close_time=int(row.open_time) + 60_000, open=row.open, high=row.high, low=row.low,
                close=row.close, volume=row.volume,
            )
            env = Envelope.create(candle, key=candle.key, ts=candle.close_time, source="bench")
            out.append((env.key.encode(), encode(env), env.ts, headers(env)))
    return out


async def reference(kwargs: dict[str, Any], topic: str, messages: list[Any]) -> tuple[float, float]:
    """(produce-only events/s, produce+consume events/s) with plain aiokafka."""
    start = await log_end_offsets(kwargs, topic)
    consumer = AIOKafkaConsumer(**kwargs, enable_auto_commit=False)
    await consumer.start()
    consumer.assign(list(start))
    for tp, offset in start.items():
        consumer.seek(tp, offset)
    producer = AIOKafkaProducer(**kwargs, linger_ms=5, max_batch_size=256 * 1024, acks="all")
    await producer.start()
    began = time.perf_counter()
    produced_at = 0.0

    async def send_all() -> None:
        nonlocal produced_at
        batch = []
        for key, value, ts, hdrs in messages:
            batch.append(await producer.send(topic, value, key=key, timestamp_ms=ts, headers=hdrs))
            if len(batch) >= 1000:
                await asyncio.gather(*batch)
                batch.clear()
        await asyncio.gather(*batch)
        produced_at = time.perf_counter() - began

    try:
        sending = asyncio.create_task(send_all())
        seen = 0
        while seen < len(messages):
            got = await consumer.getmany(timeout_ms=200, max_records=10_000)
            seen += sum(len(records) for records in got.values())
        await sending
        return len(messages) / produced_at, len(messages) / (time.perf_counter() - began)
    finally:
        await producer.stop()
        await consumer.stop()


def spawn_agent(name: str, home: Path, log: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ, CRYPTIQ_HOME=str(home), CRYPTIQ_LOG_FORMAT="json",
               CRYPTIQ_AGENTS_HEARTBEAT_INTERVAL_S="0.5")
    with log.open("ab") as out:
        return subprocess.Popen([str(Path(sys.executable).with_name("cryptiq")), "agent", name], env=env,
                                stdout=out, stderr=subprocess.STDOUT)


async def agent_processed(kwargs: dict[str, Any], agent: str, instance_pid: int, target: int) -> None:
    """Wait until the agent's heartbeats say it processed `target` messages."""
    consumer = AIOKafkaConsumer("agents.heartbeat", **kwargs, auto_offset_reset="latest")
    await consumer.start()
    try:
        async for record in consumer:
            body = json.loads(record.value)["payload"]
            mine = body["agent"] == agent and body["instance"].endswith(f":{instance_pid}")
            if mine and body["processed"] >= target:
                return
    finally:
        await consumer.stop()


def wait_logged(process: subprocess.Popen[bytes], log: Path, event: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"agent exited {process.returncode}:\n{log.read_text()[-2000:]}")
        if any(f'"event": "{event}"' in line for line in log.read_text().splitlines()):
            return
        time.sleep(0.1)
    raise TimeoutError(f"{event!r} not logged in 60 s:\n{log.read_text()[-2000:]}")


async def measure(
    settings: Settings, endpoints: infra.Endpoints, agent: str, total: int
) -> list[dict[str, Any]]:
    kwargs = infra.kafka_client_kwargs(settings.kafka, endpoints.kafka_bootstrap)
    await ensure_topics(kwargs, default_partitions=settings.kafka.default_partitions)
    log = settings.home / f"{agent}.log"
    process = spawn_agent(agent, settings.home, log)
    try:
        wait_logged(process, log, "agent ready")
        host = SourceHost(lambda deps: MarketDataAgent.from_settings(deps, settings), "market_data",
                          settings, endpoints, store=InMemoryStateStore())
        consumed = asyncio.create_task(agent_processed(kwargs, agent, process.pid, total))
        began = time.perf_counter()
        await host.start()
        await host.done.wait()
        into_broker = total / (time.perf_counter() - began)
        await host.stop()
        await asyncio.wait_for(consumed, 600)
        end_to_end_s = time.perf_counter() - began
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)
    messages = encoded_candles(settings)
    # The agent has stopped: the reference reuses its topic.
    ref_produce, ref_end_to_end = await reference(kwargs, MARKET_CANDLES.name, messages)
    cores = os.cpu_count()
    machine = f"{platform.node()} ({platform.machine()}, {cores} cores, Python {platform.python_version()})"
    common = {"events": total, "agent": agent, "machine": machine}
    e2e = total / end_to_end_s
    return [
        {"bench": "replay", "metric": "replay_into_broker", "value": round(into_broker), "unit": "events/s",
         "reference": "plain aiokafka producer, same messages pre-encoded",
         "reference_value": round(ref_produce),
         "ratio": round(into_broker / ref_produce, 3), **common},
        {"bench": "replay", "metric": "replay_end_to_end", "value": round(e2e), "unit": "events/s",
         "reference": "plain aiokafka produce + consume of the same messages",
         "reference_value": round(ref_end_to_end), "ratio": round(e2e / ref_end_to_end, 3), **common},
        {"bench": "replay", "metric": "replay_seconds_for_432k", "value": round(432_000 / e2e, 1),
         "unit": "s",
         "reference": "plain aiokafka produce + consume of 432,000", "reference_value":
         round(432_000 / ref_end_to_end, 1), "ratio": round(ref_end_to_end / e2e, 3), **common},
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="4,320 candles per stream instead of 43,200")
    parser.add_argument("--agent", default="scanner", help="the consuming agent (default: scanner)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cryptiq-replay-") as tmp:
        settings = load_settings().model_copy(update={"home": Path(tmp)})
        configure_logging(settings.log.model_copy(update={"level": "WARNING"}))
        total = build_store(settings, MONTH // 10 if args.quick else MONTH)
        endpoints = infra.up(settings)
        try:
            for row in asyncio.run(measure(settings, endpoints, args.agent, total)):
                print(json.dumps(row), flush=True)
        finally:
            infra.down(settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
