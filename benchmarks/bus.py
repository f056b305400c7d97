"""Events/s through produce -> broker -> agent -> publish -> consume, beside plain aiokafka.

    python benchmarks/bus.py [--quick] [--events N] [--rounds R]

Starts an embedded broker, Redis and Postgres under a temporary CRYPTIQ_HOME (or uses the
servers in CRYPTIQ_KAFKA_BOOTSTRAP / CRYPTIQ_REDIS_URL / CRYPTIQ_POSTGRES_URL), then, for each
round, in this order:

- reference: a plain aiokafka relay in its own process (consumer group, `getmany` batches,
  raw bytes forwarded to an output topic, sends gathered per batch, commit per batch) — the
  ceiling of a Python forwarder on this broker;
- candidate: `cryptiq agent echo` in its own process (the agent runtime: decode + validate +
  envelope + encode per event, dead-letter policy, heartbeats, commits);
- for the record: a faust-streaming relay (an agent over `stream.take_events`, sends gathered per
  batch, raw bytes, no decoding) — the best faust did here, and why the runtime uses aiokafka.

For both, this process produces N candles with plain aiokafka and consumes the outputs; the
figure is N / (time of the last output read - time the first input was sent). The median over
rounds is printed, one JSON object a line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

import infra
from agents.logs import configure_logging
from config import load_settings
from infra import install_leave_group_fix
from topics.admin import ensure_topics
from topics.envelope import Envelope
from topics.market import CandleClosed
from topics.recording import log_end_offsets
from topics.registry import DIAGNOSTICS_ECHO, MARKET_CANDLES
from topics.serialization import encode

RELAY_IN, RELAY_OUT = "bench.relay.in", "bench.relay.out"
FAUST_IN, FAUST_OUT = "bench.faust.in", "bench.faust.out"
HOUR_MS = 3_600_000
READY_TIMEOUT_S = 60.0


def candles(count: int, round_no: int) -> list[tuple[bytes, bytes, int]]:
    """`count` valid candles as (key, value, ts), spread over 30 symbols, unique per round."""
    out = []
    for i in range(count):
        open_time = (round_no * 10_000_000 + i // 30) * HOUR_MS
        price = 100.0 + (i % 97)
        payload = CandleClosed(
            exchange="bench", symbol=f"C{i % 30}/USDT", timeframe="1h", open_time=open_time,
            close_time=open_time + HOUR_MS, open=price, high=price + 2, low=price - 1,
            close=price + 1, volume=10.0,
        )
        env = Envelope.create(payload, key=payload.key, ts=payload.close_time, source="bench")
        out.append((env.key.encode(), encode(env), env.ts))
    return out


async def pipeline(
    kwargs: dict[str, Any], src: str, dst: str, messages: list[tuple[bytes, bytes, int]]
) -> float:
    """Produce `messages` into `src`, read as many from `dst`; events/s end to end."""
    start = await log_end_offsets(kwargs, dst)
    consumer = AIOKafkaConsumer(**kwargs, enable_auto_commit=False)
    await consumer.start()
    consumer.assign(list(start))
    for tp, offset in start.items():
        consumer.seek(tp, offset)
    producer = AIOKafkaProducer(**kwargs, linger_ms=5, max_batch_size=256 * 1024, acks="all")
    await producer.start()
    total = len(messages)

    async def send_all() -> None:
        futures = [await producer.send(src, value, key=key, timestamp_ms=ts) for key, value, ts in messages]
        await asyncio.gather(*futures)

    try:
        began = time.perf_counter()
        sending = asyncio.create_task(send_all())
        seen = 0
        deadline = began + 300
        while seen < total:
            batch = await consumer.getmany(timeout_ms=200, max_records=10_000)
            seen += sum(len(records) for records in batch.values())
            if time.perf_counter() > deadline:
                raise TimeoutError(f"only {seen} of {total} events came out of {dst} in 300 s")
        elapsed = time.perf_counter() - began
        await sending
        return total / elapsed
    finally:
        await producer.stop()
        await consumer.stop()


def spawn(args: list[str], home: Path, log: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ, CRYPTIQ_HOME=str(home), CRYPTIQ_LOG_FORMAT="json")
    with log.open("ab") as out:
        return subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT)


def wait_ready(process: subprocess.Popen[bytes], log: Path, marker: str) -> float:
    """Seconds until `marker` appears in the process's log (it logs how long it took itself)."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode}:\n{log.read_text()[-2000:]}")
        for line in log.read_text().splitlines():
            if marker in line and line.startswith("{"):
                return float(json.loads(line)["after_s"])
        time.sleep(0.05)
    raise TimeoutError(f"not ready within {READY_TIMEOUT_S} s:\n{log.read_text()[-2000:]}")


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()


async def relay(bootstrap: str, src: str, dst: str) -> None:
    """The reference forwarder: what a careful plain-aiokafka agent does, without our runtime."""
    kwargs = infra.kafka_client_kwargs(load_settings().kafka, bootstrap)
    assigned = asyncio.Event()

    class Listener(ConsumerRebalanceListener):
        async def on_partitions_revoked(self, revoked: Any) -> None:
            pass

        async def on_partitions_assigned(self, partitions: Any) -> None:
            assigned.set()

    consumer = AIOKafkaConsumer(
        **kwargs, group_id="bench-relay", enable_auto_commit=False, auto_offset_reset="latest",
        session_timeout_ms=4000, heartbeat_interval_ms=1000, max_poll_records=2000,
    )
    producer = AIOKafkaProducer(**kwargs, linger_ms=5, max_batch_size=256 * 1024, acks="all")
    began = time.monotonic()
    await producer.start()
    await consumer.start()
    consumer.subscribe([src], listener=Listener())
    getting = asyncio.ensure_future(consumer.getmany(timeout_ms=50))  # drives the first join
    await assigned.wait()
    await getting
    print(json.dumps({"event": "relay ready", "after_s": time.monotonic() - began}), flush=True)
    stopping = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopping.set)
    try:
        while not stopping.is_set():
            batch = await consumer.getmany(timeout_ms=50, max_records=2000)
            futures = [
                await producer.send(dst, record.value, key=record.key, timestamp_ms=record.timestamp)
                for records in batch.values() for record in records
            ]
            if futures:
                await asyncio.gather(*futures)
                await consumer.commit()
    finally:
        await consumer.stop()
        await producer.stop()


async def faust_relay(bootstrap: str, src: str, dst: str) -> None:
    """A faust-streaming forwarder done the fast way: take_events batches, gathered sends."""
    import faust

    install_leave_group_fix()
    app = faust.App(
        "bench-faust", broker=f"kafka://{bootstrap}", store="memory://", web_enabled=False,
        autodiscover=False, topic_allow_declare=False, topic_disable_leader=True,
        broker_session_timeout=4.0, broker_heartbeat_interval=1.0, broker_rebalance_timeout=4.0,
        broker_commit_interval=1.0, broker_max_poll_records=2000, producer_linger=0.005,
        producer_max_batch_size=256 * 1024, stream_buffer_maxsize=8192, consumer_auto_offset_reset="latest",
        key_serializer="raw", value_serializer="raw", datadir=tempfile.mkdtemp(prefix="bench-faust-"),
    )
    began = time.monotonic()
    ready = asyncio.Event()

    async def forward(stream: Any) -> None:
        async for events in stream.take_events(1000, within=0.05):
            futures = [
                await app.producer.send(dst, e.message.key, e.message.value, None, None, None) for e in events
            ]
            await asyncio.gather(*futures)

    async def on_assigned(sender: Any, assigned: Any, **_: Any) -> None:
        if not ready.is_set():
            ready.set()
            print(json.dumps({"event": "faust ready", "after_s": time.monotonic() - began}), flush=True)

    app.agent(app.topic(src, key_type=bytes, value_type=bytes), name="forward")(forward)
    app.on_partitions_assigned.connect(on_assigned)
    stopping = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopping.set)
    await app.start()
    try:
        await stopping.wait()
    finally:
        await app.stop()


async def create_relay_topics(kwargs: dict[str, Any], partitions: int) -> None:
    admin = AIOKafkaAdminClient(**kwargs)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        names = (RELAY_IN, RELAY_OUT, FAUST_IN, FAUST_OUT)
        new = [NewTopic(name, partitions, 1) for name in names if name not in existing]
        if new:
            await admin.create_topics(new)
    finally:
        await admin.close()


def machine() -> str:
    cpus = os.cpu_count()
    return f"{platform.node()} ({platform.machine()}, {cpus} cores, Python {platform.python_version()})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10,000 events, one round")
    parser.add_argument("--events", type=int, help="events per round (default 50,000; --quick 10,000)")
    parser.add_argument("--rounds", type=int, help="rounds, median reported (default 3; --quick 1)")
    parser.add_argument("--relay", nargs=3, metavar=("BOOTSTRAP", "SRC", "DST"), help=argparse.SUPPRESS)
    parser.add_argument("--faust-relay", nargs=3, metavar=("BOOTSTRAP", "SRC", "DST"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.relay:
        asyncio.run(relay(*args.relay))
        return 0
    if args.faust_relay:
        asyncio.run(faust_relay(*args.faust_relay))
        return 0
    events = args.events or (10_000 if args.quick else 50_000)
    rounds = args.rounds or (1 if args.quick else 3)
    if events < 1 or rounds < 1:
        parser.error("--events and --rounds must be positive")

    with tempfile.TemporaryDirectory(prefix="cryptiq-bench-") as tmp:
        home = Path(tmp)
        settings = load_settings().model_copy(update={"home": home})
        configure_logging(settings.log)  # logs to stderr: stdout carries only the JSON lines
        endpoints = infra.up(settings)
        try:
            return asyncio.run(measure(settings, endpoints, home, events, rounds))
        finally:
            infra.down(settings)


async def measure(settings: Any, endpoints: infra.Endpoints, home: Path, events: int, rounds: int) -> int:
    kwargs = infra.kafka_client_kwargs(settings.kafka, endpoints.kafka_bootstrap)
    partitions = settings.kafka.default_partitions
    await ensure_topics(kwargs, default_partitions=partitions)
    await create_relay_topics(kwargs, MARKET_CANDLES.partitions or partitions)
    # Write infra.json's endpoints where the agent process will look for them.
    relay_log, agent_log, faust_log = home / "relay.log", home / "agent.log", home / "faust.log"
    bootstrap = endpoints.kafka_bootstrap
    relay_proc = spawn([sys.executable, __file__, "--relay", bootstrap, RELAY_IN, RELAY_OUT], home, relay_log)
    agent_proc = spawn([str(Path(sys.executable).with_name("cryptiq")), "agent", "echo"], home, agent_log)
    faust_proc = spawn(
        [sys.executable, __file__, "--faust-relay", bootstrap, FAUST_IN, FAUST_OUT], home, faust_log
    )
    # One at a time, so that each pipeline has the machine to itself while it is measured.
    try:
        relay_ready = wait_ready(relay_proc, relay_log, "relay ready")
        agent_ready = wait_ready(agent_proc, agent_log, "agent ready")
        wait_ready(faust_proc, faust_log, "faust ready")
        reference, candidate, faust_rates = [], [], []
        for round_no in range(rounds):
            messages = candles(events, round_no)
            reference.append(await pipeline(kwargs, RELAY_IN, RELAY_OUT, messages))
            candidate.append(await pipeline(kwargs, MARKET_CANDLES.name, DIAGNOSTICS_ECHO.name, messages))
            faust_rates.append(await pipeline(kwargs, FAUST_IN, FAUST_OUT, messages))
    finally:
        for process in (agent_proc, relay_proc, faust_proc):
            stop(process)
    ref, value = statistics.median(reference), statistics.median(candidate)
    faust_value = statistics.median(faust_rates)
    common = {"events": events, "rounds": rounds, "machine": machine()}
    rows = [
        {
            "bench": "bus", "metric": "echo_agent_end_to_end", "value": round(value), "unit": "events/s",
            "reference": "plain aiokafka relay (raw bytes, batch send + commit)",
            "reference_value": round(ref),
            "ratio": round(value / ref, 3), **common,
        },
        {
            "bench": "bus", "metric": "faust_take_events_relay_end_to_end", "value": round(faust_value),
            "unit": "events/s", "reference": "plain aiokafka relay (raw bytes, batch send + commit)",
            "reference_value": round(ref), "ratio": round(faust_value / ref, 3), **common,
        },
        {
            "bench": "bus", "metric": "agent_ready", "value": round(agent_ready, 2), "unit": "s",
            "reference": "plain aiokafka consumer joining its group",
            "reference_value": round(relay_ready, 2),
            "ratio": round(agent_ready / relay_ready, 3) if relay_ready else None, **common,
        },
    ]
    for row in rows:
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
