"""Recording and replay on the real embedded broker, and replay determinism through a real agent.

Each test uses its own symbols (keys) or topics, so tests sharing the session broker and the
echo agent's consumer group do not see each other's records.

Windows of a topic start at `log_end` (a fetch's high watermark), not `busio.end_offsets`: the
embedded broker answers ListOffsets(latest) short of the end (see `seek_to_log_end`).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from agents.echo import EchoAgent
from agents.runtime import AgentHost
from busio import collect, produce
from config import Settings
from factories import HOUR_MS, candle_series
from infra import Endpoints
from topics.admin import ensure_topics
from topics.envelope import Envelope
from topics.recording import (
    RecordedMessage,
    Recorder,
    Recording,
    RecordingWriter,
    Replayer,
    open_recording,
    seek_to_log_end,
    topic_partitions,
)
from topics.registry import DIAGNOSTICS_ECHO, MARKET_CANDLES, TopicRegistry, TopicSpec
from topics.serialization import encode

Wire = tuple[int, bytes | None, tuple[tuple[str, bytes], ...], int]  # partition, value, headers, ts


async def log_end(kafka: dict[str, Any], topic: str) -> dict[int, int]:
    """partition -> next offset of `topic` now."""
    consumer = AIOKafkaConsumer(**kafka, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(partitions)
        ends = await seek_to_log_end(consumer, partitions)
        return {tp.partition: offset for tp, offset in ends.items()}
    finally:
        await consumer.stop()


def interleaved(tag: str, symbols: int, count: int, start: int = 0) -> list[Envelope[Any]]:
    """`symbols` candle streams of `count` candles each, interleaved in time as a feed sends them."""
    series = [candle_series(count, start=start, symbol=f"{tag}{i}/USDT") for i in range(symbols)]
    return [env for step in zip(*series, strict=True) for env in step]


async def record_while_producing(
    kafka: dict[str, Any], topic: str, envelopes: list[Envelope[Any]], out: Path
) -> Recording:
    async with Recorder(kafka, [topic], out) as recorder:
        await produce(kafka, topic, envelopes)
        await recorder.record(max_records=len(envelopes), until_idle_s=10)
    assert recorder.manifest is not None
    assert recorder.manifest.records == len(envelopes)
    return open_recording(out)


def by_key(records: list[Any], keys: set[bytes]) -> dict[bytes, list[Wire]]:
    """key -> its records in offset order (partition, value, headers, timestamp)."""
    out: dict[bytes, list[Wire]] = defaultdict(list)
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        if record.key in keys:
            out[record.key].append((record.partition, record.value, tuple(record.headers), record.timestamp))
    return dict(out)


async def test_a_recording_replays_into_a_prefix_with_the_same_bytes_keys_headers_times_and_order(
    kafka: dict[str, Any], settings: Settings, tmp_path: Path,
) -> None:
    topic = MARKET_CANDLES.name
    tag = uuid.uuid4().hex[:8].upper()
    candles = interleaved(f"RT{tag}", symbols=4, count=15, start=5_000 * HOUR_MS)
    keys = {env.key.encode() for env in candles}
    start = await log_end(kafka, topic)

    recording = await record_while_producing(kafka, topic, candles, tmp_path / "rec")

    originals = await collect(kafka, topic, start=start, until=lambda got: len(got) >= len(candles))
    assert len(originals) == len(candles)
    # The recording holds each original record: topic, partition, offset, time and bytes.
    recorded = sorted(recording.replay_order(), key=lambda m: (m.partition, m.offset))
    assert recorded == [
        RecordedMessage(r.topic, r.partition, r.offset, r.timestamp, r.key, r.value, tuple(r.headers))
        for r in sorted(originals, key=lambda r: (r.partition, r.offset))
    ]
    assert recording.manifest.topics[topic].partitions == settings.kafka.default_partitions
    assert recording.manifest.first_ts == min(env.ts for env in candles)
    assert recording.manifest.last_ts == max(env.ts for env in candles)

    prefix = f"rt-{tag.lower()}."
    async with Replayer(kafka, recording, into=prefix) as replayer:
        result = await replayer.run()
    assert (result.sent, result.total, result.stopped) == (len(candles), len(candles), False)
    assert result.targets == {topic: prefix + topic}

    target = prefix + topic
    assert (await topic_partitions(kafka))[target] == recording.manifest.topics[topic].partitions
    replayed = await collect(kafka, target, until=lambda got: len(got) >= len(candles))
    assert len(replayed) == len(candles)
    # Same partition, value bytes, headers and event time for every record, each key in order.
    assert by_key(replayed, keys) == by_key(originals, keys)
    for key, records in by_key(replayed, keys).items():
        sent = [env for env in candles if env.key.encode() == key]
        assert [ts for *_, ts in records] == [env.ts for env in sent]


async def test_replaying_the_same_recording_twice_gives_byte_identical_agent_outputs(
    kafka: dict[str, Any], settings: Settings, endpoints: Endpoints, tmp_path: Path,
) -> None:
    """The echo agent's outputs of the live stream, replay 1 and replay 2 are the same bytes."""
    tag = uuid.uuid4().hex[:8].upper()
    candles = interleaved(f"DT{tag}", symbols=3, count=20, start=6_000 * HOUR_MS)
    keys = {env.key.encode() for env in candles}
    input_ids = {env.event_id for env in candles}

    def complete(records: list[Any]) -> bool:
        return sum(record.key in keys for record in records) >= len(candles)

    host = AgentHost(EchoAgent, settings, endpoints)
    await host.start()
    try:
        await host.wait_ready(timeout=30)
        runs: list[dict[bytes, list[Wire]]] = []
        start = await log_end(kafka, DIAGNOSTICS_ECHO.name)
        recording = await record_while_producing(kafka, MARKET_CANDLES.name, candles, tmp_path / "rec")
        runs.append(by_key(await collect(kafka, DIAGNOSTICS_ECHO.name, start=start, until=complete), keys))
        for _ in range(2):
            start = await log_end(kafka, DIAGNOSTICS_ECHO.name)
            async with Replayer(kafka, recording) as replayer:  # into the real market.candles
                await replayer.run()
            outputs = await collect(kafka, DIAGNOSTICS_ECHO.name, start=start, until=complete)
            runs.append(by_key(outputs, keys))
    finally:
        await host.stop()
    assert host.error is None

    live, first, second = runs
    assert sum(len(records) for records in first.values()) == len(candles)
    assert first == second  # partition, value bytes, headers and timestamp of every output, per key in order
    assert first == live  # and a replay gives what the live stream gave
    for records in first.values():
        bodies = [orjson.loads(value) for _, value, _, _ in records if value is not None]
        assert {body["payload"]["of_event_id"] for body in bodies} <= input_ids
        times = [body["payload"]["of_ts"] for body in bodies]
        assert len(times) == 20
        assert times == sorted(times)


def write_minutes(path: Path, topic: str, seconds: int, step: int) -> Recording:
    """A recording of one record every `step` seconds over `seconds` of event time."""
    writer = RecordingWriter(path)
    for i, ts in enumerate(range(1_700_000_000_000, 1_700_000_000_000 + seconds * 1000 + 1, step * 1000)):
        writer.write(RecordedMessage(topic, 0, i, ts, b"k", f"{i}".encode()))
    writer.close({topic: 1})
    return open_recording(path)


async def test_speed_60_replays_two_minutes_of_event_time_in_about_two_seconds(
    kafka: dict[str, Any], tmp_path: Path,
) -> None:
    topic = f"pace-{uuid.uuid4().hex[:8]}"
    recording = write_minutes(tmp_path / "rec", topic, seconds=120, step=10)
    async with Replayer(kafka, recording, speed=60) as replayer:  # creates the topic
        began = time.monotonic()
        result = await replayer.run()
        took = time.monotonic() - began
    assert result.sent == 13
    assert 1.5 <= took <= 6.0, f"speed 60 over 120 s of event time took {took:.2f} s"
    replayed = await collect(kafka, topic, until=lambda got: len(got) >= 13)
    assert [r.timestamp for r in replayed] == [m.timestamp for m in recording.replay_order()]


async def test_a_paced_replay_stops_promptly_when_asked(kafka: dict[str, Any], tmp_path: Path) -> None:
    topic = f"pace-{uuid.uuid4().hex[:8]}"
    recording = write_minutes(tmp_path / "rec", topic, seconds=600, step=60)
    stop = asyncio.Event()
    async with Replayer(kafka, recording, speed=1) as replayer:
        asyncio.get_running_loop().call_later(0.5, stop.set)
        began = time.monotonic()
        result = await replayer.run(stop=stop)
        took = time.monotonic() - began
    assert result.stopped
    assert result.sent == 1  # the first record at once, the next one a minute later
    assert took < 3.0


async def test_a_target_with_another_partition_count_gets_records_by_key_in_order(
    kafka: dict[str, Any], tmp_path: Path,
) -> None:
    topic = f"repart-{uuid.uuid4().hex[:8]}"
    await ensure_topics(
        kafka, default_partitions=1, registry=TopicRegistry((TopicSpec(topic, "one partition", "k", ()),)),
    )
    writer = RecordingWriter(tmp_path / "rec")
    for partition in range(4):  # recorded from a 4-partition topic; key k<p> lived on partition p
        for offset in range(5):
            writer.write(RecordedMessage(topic, partition, offset, 1_000 * offset, f"k{partition}".encode(),
                                         f"{partition}:{offset}".encode()))
    writer.close({topic: 4})
    async with Replayer(kafka, open_recording(tmp_path / "rec")) as replayer:
        assert (await replayer.run()).sent == 20
    records = await collect(kafka, topic, until=lambda got: len(got) >= 20)
    assert {r.partition for r in records} == {0}
    for partition in range(4):
        values = [r.value for r in records if r.key == f"k{partition}".encode()]
        assert values == [f"{partition}:{offset}".encode() for offset in range(5)]


async def test_a_recorder_stops_when_told_and_keeps_what_it_recorded(
    kafka: dict[str, Any], tmp_path: Path,
) -> None:
    stop = asyncio.Event()
    candles = candle_series(5, start=7_000 * HOUR_MS, symbol=f"ST{uuid.uuid4().hex[:8]}/USDT")
    async with Recorder(kafka, [MARKET_CANDLES.name], tmp_path / "rec") as recorder:
        await produce(kafka, MARKET_CANDLES.name, candles)
        asyncio.get_running_loop().call_later(1.0, stop.set)
        assert await asyncio.wait_for(recorder.record(stop=stop), 10) == 5
    assert recorder.manifest is not None
    assert recorder.manifest.records == 5
    assert [m.value for m in open_recording(tmp_path / "rec").replay_order()] == [encode(c) for c in candles]
