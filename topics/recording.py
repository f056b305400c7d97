"""Recordings of Kafka topics: a replayable log on disk, the `Recorder` that writes one and the
`Replayer` that publishes it again, preserving per-key order, event times and bytes.

A recording is a directory::

    manifest.json                                  written last, atomically: present = complete
    market.candles-0/segment-000001.jsonl.gz       one folder per recorded topic-partition,
    market.candles-0/segment-000002.jsonl.gz       a new segment every `segment_bytes` of JSON
    signals.technical-2/segment-000001.jsonl.gz

Each segment is gzip-compressed JSON lines, one Kafka record per line, in offset order::

    {"topic": "market.candles", "partition": 0, "offset": 41, "timestamp": 1700000000000,
     "key": "<base64>", "value": "<base64>", "headers": [["type", "<base64>"], ...]}

`key` and `value` are the record's exact bytes in base64 (`null` for none); `timestamp` is the
Kafka timestamp, which CryptIQ sets to the event time (UTC ms). Segments are written with a
fixed gzip header (no file name, mtime 0), so recording the same records twice gives the same
bytes. `zcat segment-*.jsonl.gz | jq` reads one.

Replay order: a k-way merge of the recorded partitions, always taking the head record with the
smallest (timestamp, topic, partition). Each partition's records keep their recorded order even
where their timestamps go backwards, so every key (which lives on one partition) keeps its order;
across partitions the merge follows event time, with a stable tie-break.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import gzip
import heapq
import os
import re
import time
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any, Literal

import orjson
import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import KafkaError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from config import CryptiqError, RetriableError
from topics.admin import ensure_topics
from topics.registry import REGISTRY, TopicRegistry, TopicSpec

FORMAT = "cryptiq-recording"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
DEFAULT_SEGMENT_BYTES = 64 * 1024 * 1024  # uncompressed JSON per segment
_GZIP_LEVEL = 6  # on candle envelopes: 9 is 30% slower for 3% smaller files, 1 twice as fast but 11% larger
_POLL_MS = 200  # how long a recorder waits for records before it checks stop and idleness
_FLUSH_EVERY = 5000  # records a replay hands the producer before it waits for their delivery
_DELIVER_BEFORE_WAIT_S = 0.05  # a paced replay confirms what it sent before waits this long or longer
_PROGRESS_EVERY_S = 0.25  # ... and before shorter waits once this long has passed since the last time
_TOPIC_NAME = re.compile(r"^[A-Za-z0-9._-]*$")
_MAX_TOPIC_LENGTH = 249

log = structlog.get_logger("cryptiq.recording")


class RecordingError(CryptiqError):
    """A recording cannot be written, read or replayed as asked; the message says what to fix."""


class BrokerUnavailableError(RetriableError):
    """The Kafka broker did not answer."""


# -- records and their line format ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RecordedMessage:
    """One Kafka record as recorded: where it was, when it happened, and its exact bytes."""

    topic: str
    partition: int
    offset: int
    timestamp: int  # Kafka timestamp = event time, UTC ms
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...] = ()


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode("ascii")


def _unb64(text: str | None) -> bytes | None:
    return None if text is None else base64.b64decode(text, validate=True)


def encode_line(message: RecordedMessage) -> bytes:
    """The JSON line of `message` in a segment, newline included."""
    return orjson.dumps({
        "topic": message.topic,
        "partition": message.partition,
        "offset": message.offset,
        "timestamp": message.timestamp,
        "key": _b64(message.key),
        "value": _b64(message.value),
        "headers": [[name, _b64(value)] for name, value in message.headers],
    }) + b"\n"


def decode_line(line: bytes, where: str) -> RecordedMessage:
    """Parse one segment line; `where` (file:line) goes into the error if it is not a record."""
    try:
        data = orjson.loads(line)
        return RecordedMessage(
            topic=data["topic"], partition=data["partition"], offset=data["offset"],
            timestamp=data["timestamp"], key=_unb64(data["key"]), value=_unb64(data["value"]),
            headers=tuple((name, _unb64(value)) for name, value in data["headers"]),
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, binascii.Error) as exc:
        raise RecordingError(f"{where} is not a recorded record ({type(exc).__name__}: {exc})") from None


# -- the manifest --------------------------------------------------------------------------------


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SegmentInfo(_Frozen):
    """One segment file: which partition, how many records, their offsets and event times."""

    file: str = Field(description="path relative to the recording directory")
    topic: str
    partition: int = Field(ge=0)
    records: int = Field(ge=1)
    first_offset: int = Field(ge=0)
    last_offset: int = Field(ge=0)
    first_ts: int = Field(description="earliest Kafka timestamp in the segment, UTC ms")
    last_ts: int = Field(description="latest Kafka timestamp in the segment, UTC ms")
    bytes: int = Field(ge=0, description="uncompressed JSON bytes")


class TopicInfo(_Frozen):
    """A recorded topic: its partition count on the source broker and how many records it gave."""

    partitions: int = Field(ge=1)
    records: int = Field(ge=0)


class Manifest(_Frozen):
    """What a recording holds. Written when the recorder stops; its presence marks a complete one."""

    format: Literal["cryptiq-recording"] = FORMAT
    format_version: int = FORMAT_VERSION
    created_by: str
    records: int = Field(ge=0)
    first_ts: int | None = Field(description="earliest event time recorded, UTC ms")
    last_ts: int | None = Field(description="latest event time recorded, UTC ms")
    topics: dict[str, TopicInfo]
    segments: list[SegmentInfo] = Field(description="per topic-partition, in replay order")


# -- writing -------------------------------------------------------------------------------------


class _Segment:
    """An open segment file and the facts about it the manifest needs."""

    def __init__(self, directory: Path, file: str, topic: str, partition: int) -> None:
        self.file, self.topic, self.partition = file, topic, partition
        self._raw = (directory / file).open("wb")
        # No file name and mtime 0 in the gzip header: same records, same bytes.
        self._gzip = gzip.GzipFile(
            filename="", mode="wb", compresslevel=_GZIP_LEVEL, fileobj=self._raw, mtime=0
        )
        self.records = self.bytes = 0
        self.first_offset = self.last_offset = -1
        self.first_ts = self.last_ts = 0

    def append(self, message: RecordedMessage, line: bytes) -> None:
        if self.records == 0:
            self.first_offset = message.offset
            self.first_ts = self.last_ts = message.timestamp
        self._gzip.write(line)
        self.records += 1
        self.bytes += len(line)
        self.last_offset = message.offset
        self.first_ts = min(self.first_ts, message.timestamp)
        self.last_ts = max(self.last_ts, message.timestamp)

    def close(self) -> SegmentInfo:
        self._gzip.close()
        self._raw.close()
        return SegmentInfo(
            file=self.file, topic=self.topic, partition=self.partition, records=self.records,
            first_offset=self.first_offset, last_offset=self.last_offset,
            first_ts=self.first_ts, last_ts=self.last_ts, bytes=self.bytes,
        )


class RecordingWriter:
    """Appends records to per-partition segment files; `close` writes the manifest.

    The directory must not exist or be empty, so a recording is never mixed with another.
    """

    def __init__(
        self, path: Path, *, segment_bytes: int = DEFAULT_SEGMENT_BYTES, created_by: str = ""
    ) -> None:
        if segment_bytes < 1:
            raise ValueError(f"segment_bytes must be positive, got {segment_bytes}")
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise RecordingError(f"{path} already exists and is not an empty directory: choose a new one")
        path.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.segment_bytes = segment_bytes
        self.created_by = created_by or f"cryptiq {version('cryptiq')}"
        self._open: dict[tuple[str, int], _Segment] = {}
        self._sequence: dict[tuple[str, int], int] = {}
        self._last_offset: dict[tuple[str, int], int] = {}
        self._done: list[SegmentInfo] = []

    def write(self, message: RecordedMessage) -> None:
        """Append `message` to its partition's segment, rolling to a new one at `segment_bytes`."""
        where = (message.topic, message.partition)
        if message.offset <= self._last_offset.get(where, -1):
            raise ValueError(
                f"{message.topic}-{message.partition}: offset {message.offset} after "
                f"{self._last_offset[where]}: records must be written in offset order"
            )
        self._last_offset[where] = message.offset
        line = encode_line(message)
        segment = self._open.get(where)
        if segment is not None and segment.bytes + len(line) > self.segment_bytes:
            self._done.append(segment.close())
            segment = None
        if segment is None:
            segment = self._open[where] = self._new_segment(*where)
        segment.append(message, line)

    def _new_segment(self, topic: str, partition: int) -> _Segment:
        folder = f"{topic}-{partition}"
        (self.path / folder).mkdir(exist_ok=True)
        number = self._sequence[(topic, partition)] = self._sequence.get((topic, partition), 0) + 1
        return _Segment(self.path, f"{folder}/segment-{number:06d}.jsonl.gz", topic, partition)

    def close(self, partitions: Mapping[str, int]) -> Manifest:
        """Close every segment and write `manifest.json`; `partitions` = topic -> partition count."""
        self._done.extend(segment.close() for segment in self._open.values())
        self._open.clear()
        segments = sorted(self._done, key=lambda s: (s.topic, s.partition, s.file))
        stray = {s.topic for s in segments} - set(partitions)
        if stray:
            raise ValueError(f"records of {sorted(stray)} were written but their topics not declared")
        manifest = Manifest(
            created_by=self.created_by,
            records=sum(s.records for s in segments),
            first_ts=min((s.first_ts for s in segments), default=None),
            last_ts=max((s.last_ts for s in segments), default=None),
            topics={
                topic: TopicInfo(
                    partitions=count, records=sum(s.records for s in segments if s.topic == topic)
                )
                for topic, count in sorted(partitions.items())
            },
            segments=segments,
        )
        temporary = self.path / f"{MANIFEST}.tmp"
        temporary.write_bytes(orjson.dumps(manifest.model_dump(mode="json"), option=orjson.OPT_INDENT_2))
        os.replace(temporary, self.path / MANIFEST)
        return manifest


# -- reading -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Recording:
    """A complete recording on disk (see `open_recording`)."""

    path: Path
    manifest: Manifest

    def partitions(self) -> list[tuple[str, int]]:
        """The recorded (topic, partition) pairs that hold records, sorted."""
        return sorted({(s.topic, s.partition) for s in self.manifest.segments})

    def read_partition(self, topic: str, partition: int) -> Iterator[RecordedMessage]:
        """The records of one partition in recorded (offset) order."""
        for segment in self.manifest.segments:
            if segment.topic == topic and segment.partition == partition:
                yield from self._read_segment(segment)

    def replay_order(self) -> Iterator[RecordedMessage]:
        """Every record, merged by (timestamp, topic, partition), each partition in its own order."""
        streams = [self.read_partition(topic, partition) for topic, partition in self.partitions()]
        return heapq.merge(*streams, key=lambda m: (m.timestamp, m.topic, m.partition))

    def _read_segment(self, segment: SegmentInfo) -> Iterator[RecordedMessage]:
        count = 0
        try:
            with gzip.open(self.path / segment.file, "rb") as lines:
                for count, line in enumerate(lines, start=1):
                    message = decode_line(line, f"{segment.file}:{count}")
                    if (message.topic, message.partition) != (segment.topic, segment.partition):
                        raise RecordingError(
                            f"{segment.file}:{count} holds a record of {message.topic}-{message.partition}, "
                            f"the manifest says {segment.topic}-{segment.partition}"
                        )
                    yield message
        except (OSError, EOFError, zlib.error) as exc:
            raise RecordingError(f"segment {segment.file} is damaged: {exc}") from None
        if count != segment.records:
            raise RecordingError(
                f"segment {segment.file} holds {count} records, the manifest says {segment.records}"
            )


def open_recording(path: Path) -> Recording:
    """The recording in `path`; `RecordingError` names what is missing or wrong if it is not one."""
    if not path.is_dir():
        raise RecordingError(f"{path} is not a recording: no such directory")
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise RecordingError(
            f"{path} is not a recording: {MANIFEST} is missing (a recorder writes it when it stops)"
        )
    try:
        data = orjson.loads(manifest_path.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise RecordingError(f"{manifest_path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise RecordingError(f"{manifest_path} is not a CryptIQ recording manifest (format is not {FORMAT})")
    if data.get("format_version") != FORMAT_VERSION:
        raise RecordingError(
            f"{manifest_path} has format_version {data.get('format_version')!r}; "
            f"this cryptiq reads version {FORMAT_VERSION}"
        )
    try:
        manifest = Manifest.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise RecordingError(f"{manifest_path} is invalid at {where}: {first['msg']}") from None
    missing = [s.file for s in manifest.segments if not (path / s.file).is_file()]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise RecordingError(f"{path} is incomplete: segment {missing[0]} is missing{more}")
    return Recording(path, manifest)


# -- Kafka ---------------------------------------------------------------------------------------


async def topic_partitions(client_kwargs: dict[str, Any]) -> dict[str, int]:
    """Every topic on the broker -> its partition count."""
    client = AIOKafkaClient(**client_kwargs)
    try:
        await client.bootstrap()
        cluster = await client.fetch_all_metadata()
    except KafkaError as exc:
        raise BrokerUnavailableError(
            f"Kafka at {client_kwargs.get('bootstrap_servers')} did not answer ({exc}): "
            "check `cryptiq infra status`"
        ) from None
    finally:
        await client.close()
    return {topic: len(cluster.partitions_for_topic(topic) or ()) for topic in cluster.topics()}


async def seek_to_log_end(
    consumer: AIOKafkaConsumer, partitions: Sequence[TopicPartition], timeout_s: float = 10.0
) -> dict[TopicPartition, int]:
    """Position an assigned consumer at the end of `partitions`; return those end offsets.

    Not `consumer.end_offsets` or `seek_to_end` alone: the embedded broker (Tansu) answers
    ListOffsets(latest) with the base offset of the partition's last record batch + 1, short of
    the end whenever that batch holds more than one record. So that answer is used only as a
    starting point, and the end is the high watermark a fetch from there reports, which is
    right on every broker. Records fetched on the way are dropped.
    """
    for partition, offset in (await consumer.end_offsets(partitions)).items():
        consumer.seek(partition, offset)
    deadline = time.monotonic() + timeout_s
    while any(consumer.highwater(partition) is None for partition in partitions):
        if time.monotonic() > deadline:
            raise BrokerUnavailableError(f"Kafka reported no high watermark within {timeout_s:.0f} s")
        await consumer.getmany(*partitions, timeout_ms=_POLL_MS)
    ends = {partition: consumer.highwater(partition) for partition in partitions}
    for partition, offset in ends.items():
        consumer.seek(partition, offset)
    return ends


async def log_end_offsets(client_kwargs: dict[str, Any], topic: str) -> dict[TopicPartition, int]:
    """The true end offset of each partition of `topic` (see `seek_to_log_end`), from a new consumer."""
    consumer = AIOKafkaConsumer(**client_kwargs, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(partitions)
        return await seek_to_log_end(consumer, partitions)
    finally:
        await consumer.stop()


class Recorder:
    """Consumes topics (no consumer group) and writes what arrives into a recording.

    `async with Recorder(...) as recorder:` checks the topics, creates the directory and fixes
    the start offsets: the end of each partition (records produced from now on), or its start
    with `from_beginning`. Then `await recorder.record(...)` until stopped, idle or full.
    Leaving the block closes the segments and writes the manifest, also after an error, so
    what was recorded stays usable; `recorder.manifest` is it.
    """

    def __init__(
        self,
        client_kwargs: dict[str, Any],
        topics: Sequence[str],
        out: Path,
        *,
        from_beginning: bool = False,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        registry: TopicRegistry = REGISTRY,
    ) -> None:
        if not topics:
            raise RecordingError("name at least one topic to record")
        self.client_kwargs = client_kwargs
        self.topics = list(dict.fromkeys(topics))
        self.out = out
        self.from_beginning = from_beginning
        self.segment_bytes = segment_bytes
        self.registry = registry
        self.recorded = 0
        self.manifest: Manifest | None = None
        self._partitions: dict[str, int] = {}
        self._writer: RecordingWriter | None = None
        self._consumer: AIOKafkaConsumer | None = None

    async def __aenter__(self) -> Recorder:
        on_broker = await topic_partitions(self.client_kwargs)
        unknown = [topic for topic in self.topics if topic not in on_broker]
        if unknown and unknown[0] in self.registry.names():
            raise RecordingError(
                f"topic {unknown[0]!r} does not exist on the broker yet: `cryptiq infra up` creates it"
            )
        if unknown:
            known = ", ".join(self.registry.names())
            raise RecordingError(
                f"unknown topic {unknown[0]!r}: it is not on the broker; registry topics: {known} "
                "(any topic that exists on the broker can be recorded)"
            )
        self._partitions = {topic: on_broker[topic] for topic in self.topics}
        self._writer = RecordingWriter(self.out, segment_bytes=self.segment_bytes)
        consumer = AIOKafkaConsumer(**self.client_kwargs, group_id=None, enable_auto_commit=False)
        try:
            await consumer.start()
            partitions = [TopicPartition(t, p) for t, count in self._partitions.items() for p in range(count)]
            consumer.assign(partitions)
            if self.from_beginning:
                for partition, offset in (await consumer.beginning_offsets(partitions)).items():
                    consumer.seek(partition, offset)
            else:
                await seek_to_log_end(consumer, partitions)
        except KafkaError as exc:  # the directory stays empty, so the same --out can be used again
            await consumer.stop()
            raise BrokerUnavailableError(f"cannot read {', '.join(self.topics)} from Kafka: {exc}") from None
        except BaseException:
            await consumer.stop()
            raise
        self._consumer = consumer
        return self

    async def record(
        self,
        *,
        stop: asyncio.Event | None = None,
        until_idle_s: float | None = None,
        max_records: int | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> int:
        """Write records until `stop` is set, `until_idle_s` pass without one, or `max_records`.

        `progress(recorded)` is called after each batch. Returns the number recorded so far.
        """
        consumer, writer = self._consumer, self._writer
        assert consumer is not None, "use `async with Recorder(...)`"
        assert writer is not None
        last_record = time.monotonic()
        while not (stop is not None and stop.is_set()):
            room = None if max_records is None else max_records - self.recorded
            if room is not None and room <= 0:
                break
            try:
                batch = await consumer.getmany(timeout_ms=_POLL_MS, max_records=min(room or 10_000, 10_000))
            except KafkaError as exc:
                raise BrokerUnavailableError(
                    f"recording stopped after {self.recorded} records, which are kept: "
                    f"Kafka failed ({type(exc).__name__}: {exc})"
                ) from exc
            if not batch:
                if until_idle_s is not None and time.monotonic() - last_record >= until_idle_s:
                    break
                continue
            last_record = time.monotonic()
            for records in batch.values():
                for record in records:
                    writer.write(RecordedMessage(
                        topic=record.topic, partition=record.partition, offset=record.offset,
                        timestamp=record.timestamp, key=record.key, value=record.value,
                        headers=tuple(record.headers or ()),
                    ))
                self.recorded += len(records)
            if progress is not None:
                progress(self.recorded)
        return self.recorded

    async def __aexit__(self, *exc: object) -> None:
        try:
            if self._consumer is not None:
                await self._consumer.stop()
        finally:
            if self._writer is not None:
                self.manifest = self._writer.close(self._partitions)


def check_prefix(prefix: str) -> str:
    """`prefix` if it can start a Kafka topic name, else `RecordingError`."""
    if not _TOPIC_NAME.match(prefix):
        raise RecordingError(
            f"--into prefix {prefix!r} may only use letters, digits, '.', '_' and '-' (Kafka topic names)"
        )
    return prefix


@dataclass(frozen=True)
class ReplayResult:
    """What a replay did: records sent of the total, seconds taken, where each topic went."""

    sent: int
    total: int
    seconds: float
    targets: dict[str, str]
    stopped: bool


class Replayer:
    """Publishes a recording again: same keys, value bytes, headers and timestamps, per-key order.

    `async with Replayer(...) as replayer:` creates the target topics that are missing (the
    recorded name, or `into` + the name) with the recorded partition count and the registry's
    topic configs, and starts the producer; `await replayer.run()` sends.

    Partitions: a record goes to its recorded partition when the target has the recorded
    partition count, else to the partition its key hashes to (a warning is logged). Either
    way all records of a key land on one partition.

    Order: records are handed to one producer from one task in replay order (see the module
    docstring). aiokafka appends them to per-partition batches in that order, keeps at most one
    produce request in flight per broker and mutes a partition while its batch is in flight,
    and puts a batch it retries back at the head of its partition's queue; so within a
    partition — hence within a key — the broker receives them in order. A send that fails for
    good fails the replay (the error is raised when its batch is awaited).

    Pacing: with `speed` (recorded seconds per wall-clock second) each record waits until
    (its event time - the first event time) / speed has passed on a monotonic clock; event
    times are taken as a running maximum, so a late record is sent at once. Before a wait of
    50 ms or more the records sent so far are awaited, so they are on the broker when the
    clock moves on (shorter waits leave them to the producer's 5 ms linger, so a fast paced
    replay is not bound by broker round trips). `speed` None ("max") sends as fast as the
    producer batches, awaiting deliveries every 5,000 records.
    """

    def __init__(
        self,
        client_kwargs: dict[str, Any],
        recording: Recording,
        *,
        speed: float | None = None,
        into: str = "",
        replication_factor: int = 1,
        registry: TopicRegistry = REGISTRY,
    ) -> None:
        if speed is not None and not speed > 0:
            raise ValueError(f"speed must be a positive number or None (as fast as possible), got {speed}")
        self.client_kwargs = client_kwargs
        self.recording = recording
        self.speed = speed
        self.into = check_prefix(into)
        self.replication_factor = replication_factor
        self.registry = registry
        self.targets = {topic: into + topic for topic in recording.manifest.topics}
        too_long = [t for t in self.targets.values() if len(t) > _MAX_TOPIC_LENGTH]
        if too_long:
            raise RecordingError(f"topic {too_long[0]!r} is longer than Kafka allows ({_MAX_TOPIC_LENGTH})")
        self._keep_partitions: dict[str, bool] = {}
        self._producer: AIOKafkaProducer | None = None

    async def __aenter__(self) -> Replayer:
        on_broker = await topic_partitions(self.client_kwargs)
        topics = self.recording.manifest.topics
        missing = [
            self._target_spec(topic, info.partitions)
            for topic, info in topics.items()
            if self.targets[topic] not in on_broker
        ]
        if missing:
            await ensure_topics(
                self.client_kwargs, default_partitions=1, replication_factor=self.replication_factor,
                registry=TopicRegistry(tuple(missing)),
            )
        for topic, info in topics.items():
            target = self.targets[topic]
            have = on_broker.get(target, info.partitions)
            self._keep_partitions[topic] = have == info.partitions
            if have != info.partitions:
                log.warning(
                    "replay_partitioned_by_key", topic=target, recorded_partitions=info.partitions,
                    target_partitions=have,
                )
        producer = AIOKafkaProducer(**self.client_kwargs, acks="all", linger_ms=5, max_batch_size=256 * 1024)
        try:
            await producer.start()
        except KafkaError as exc:
            await producer.stop()
            raise BrokerUnavailableError(f"cannot start a Kafka producer: {exc}") from None
        self._producer = producer
        return self

    def _target_spec(self, topic: str, partitions: int) -> TopicSpec:
        if topic in self.registry.names():
            original = self.registry.get(topic)
            return dataclasses.replace(original, name=self.targets[topic], partitions=partitions)
        return TopicSpec(self.targets[topic], f"replay of {topic}", "as recorded", (), partitions=partitions)

    async def run(
        self, *, stop: asyncio.Event | None = None, progress: Callable[[int], None] | None = None,
    ) -> ReplayResult:
        """Send every record (until `stop` is set); `progress(sent)` as deliveries are confirmed."""
        total = self.recording.manifest.records
        deliveries = _Deliveries(progress)
        started = time.monotonic()
        try:
            stopped = await self._send_all(deliveries, started, stop)
            await deliveries.confirm()
        except KafkaError as exc:
            raise BrokerUnavailableError(
                f"replay failed after {deliveries.sent} of {total} records: "
                f"Kafka failed ({type(exc).__name__}: {exc})"
            ) from exc
        return ReplayResult(
            sent=deliveries.sent, total=total, seconds=time.monotonic() - started,
            targets=dict(self.targets), stopped=stopped,
        )

    async def _send_all(self, deliveries: _Deliveries, started: float, stop: asyncio.Event | None) -> bool:
        """Hand every record to the producer in replay order, paced; True if `stop` ended it early."""
        producer = self._producer
        assert producer is not None, "use `async with Replayer(...)`"
        first_ts = horizon = 0
        for number, message in enumerate(self.recording.replay_order()):
            if stop is not None and stop.is_set():
                return True
            if self.speed is not None:
                if number == 0:
                    first_ts = horizon = message.timestamp
                horizon = max(horizon, message.timestamp)
                delay = started + (horizon - first_ts) / 1000 / self.speed - time.monotonic()
                if delay > 0:
                    if delay >= _DELIVER_BEFORE_WAIT_S or deliveries.overdue():
                        await deliveries.confirm()
                    if await _stopped_within(stop, delay):
                        return True
            deliveries.add(await producer.send(
                self.targets[message.topic], message.value, key=message.key,
                partition=message.partition if self._keep_partitions[message.topic] else None,
                timestamp_ms=message.timestamp, headers=list(message.headers),
            ))
            if len(deliveries.futures) >= _FLUSH_EVERY:
                await deliveries.confirm()
        return False

    async def __aexit__(self, *exc: object) -> None:
        if self._producer is not None:
            await self._producer.stop()


@dataclass
class _Deliveries:
    """Sends handed to the producer but not yet confirmed; `progress` hears of each confirmation."""

    progress: Callable[[int], None] | None
    sent: int = 0
    futures: list[asyncio.Future[Any]] = field(default_factory=list)
    confirmed_at: float = field(default_factory=time.monotonic)

    def add(self, future: asyncio.Future[Any]) -> None:
        self.futures.append(future)
        self.sent += 1

    def overdue(self) -> bool:
        return time.monotonic() - self.confirmed_at >= _PROGRESS_EVERY_S

    async def confirm(self) -> None:
        """Wait until the broker has every record sent so far (raises the first failure)."""
        await asyncio.gather(*self.futures)
        self.futures.clear()
        self.confirmed_at = time.monotonic()
        if self.progress is not None:
            self.progress(self.sent)


async def _stopped_within(stop: asyncio.Event | None, seconds: float) -> bool:
    """Sleep `seconds`, or less if `stop` is set meanwhile; True if it was."""
    if stop is None:
        await asyncio.sleep(seconds)
        return False
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        return False
    return True
