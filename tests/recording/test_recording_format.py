"""The recording format on disk: segments roll at their size limit, the manifest tells the truth,
reading gives each partition back in recorded order, and a damaged recording says what is wrong.

No broker: these exercise `RecordingWriter` and `open_recording` alone.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from topics.recording import (
    FORMAT_VERSION,
    MANIFEST,
    RecordedMessage,
    RecordingError,
    RecordingWriter,
    encode_line,
    open_recording,
)


def message(topic: str, partition: int, offset: int, ts: int, **changes: object) -> RecordedMessage:
    values: dict[str, object] = {
        "topic": topic, "partition": partition, "offset": offset, "timestamp": ts,
        "key": f"key-{partition}".encode(), "value": f'{{"n": {offset}}}'.encode(),
        "headers": (("type", b"Test"), ("event_id", f"id-{offset}".encode())),
    }
    values.update(changes)
    return RecordedMessage(**values)  # type: ignore[arg-type]


def write(
    path: Path, messages: list[RecordedMessage], partitions: dict[str, int], segment_bytes: int
) -> None:
    writer = RecordingWriter(path, segment_bytes=segment_bytes, created_by="tests")
    for item in messages:
        writer.write(item)
    writer.close(partitions)


def test_segments_roll_at_the_size_limit_and_the_manifest_counts_everything(tmp_path: Path) -> None:
    # Equal-length lines (3-digit offsets, 5-digit times), so ten fit a segment exactly.
    candles = [
        message("market.candles", p, 100 + i, 10_000 + 1_000 * i + p) for i in range(40) for p in (0, 2)
    ]
    signals = [message("signals.technical", 0, i, 10_500 + 1_000 * i) for i in range(5)]
    assert len({len(encode_line(m)) for m in candles}) == 1
    limit = 10 * len(encode_line(candles[0])) + 5
    write(tmp_path / "rec", candles + signals, {"market.candles": 3, "signals.technical": 1}, limit)

    recording = open_recording(tmp_path / "rec")
    manifest = recording.manifest
    assert manifest.format_version == FORMAT_VERSION
    assert manifest.created_by == "tests"
    assert manifest.records == 85
    assert manifest.topics["market.candles"].partitions == 3
    assert manifest.topics["market.candles"].records == 80
    assert manifest.topics["signals.technical"].model_dump() == {"partitions": 1, "records": 5}
    assert manifest.first_ts == 10_000
    assert manifest.last_ts == 49_002
    # 40 records per candle partition, 10 per segment: 4 segments each; 1 for signals.
    per_partition = {(s.topic, s.partition): [] for s in manifest.segments}
    for segment in manifest.segments:
        per_partition[(segment.topic, segment.partition)].append(segment)
        assert segment.bytes <= limit
        assert (tmp_path / "rec" / segment.file).is_file()
    assert {k: len(v) for k, v in per_partition.items()} == {
        ("market.candles", 0): 4, ("market.candles", 2): 4, ("signals.technical", 0): 1,
    }
    first, *_, last = per_partition[("market.candles", 2)]
    assert (first.file, first.first_offset, first.records) == (
        "market.candles-2/segment-000001.jsonl.gz", 100, 10,
    )
    assert (last.file, last.last_offset, last.last_ts) == (
        "market.candles-2/segment-000004.jsonl.gz", 139, 49_002,
    )
    assert sum(s.records for s in manifest.segments) == 85
    # The manifest on disk is the one returned.
    assert json.loads((tmp_path / "rec" / MANIFEST).read_text())["records"] == 85

    assert list(recording.read_partition("market.candles", 2)) == [m for m in candles if m.partition == 2]
    assert list(recording.read_partition("signals.technical", 0)) == signals


def test_a_segment_is_readable_with_zcat_and_base64(tmp_path: Path) -> None:
    item = message("t", 0, 7, 123, key=None, value=b"\x00\xffbinary", headers=(("h", None), ("e", b"")))
    write(tmp_path / "rec", [item], {"t": 1}, 1 << 20)
    line = json.loads(gzip.decompress((tmp_path / "rec" / "t-0" / "segment-000001.jsonl.gz").read_bytes()))
    assert line == {
        "topic": "t", "partition": 0, "offset": 7, "timestamp": 123,
        "key": None, "value": "AP9iaW5hcnk=", "headers": [["h", None], ["e", ""]],
    }
    assert list(open_recording(tmp_path / "rec").read_partition("t", 0)) == [item]


def test_replay_order_follows_event_time_but_never_reorders_a_partition(tmp_path: Path) -> None:
    # Partition 0 has a late record (ts goes backwards): it must stay after its predecessor.
    p0 = [message("t", 0, 0, 10), message("t", 0, 1, 30), message("t", 0, 2, 20), message("t", 0, 3, 40)]
    p1 = [message("t", 1, 0, 15), message("t", 1, 1, 25), message("t", 1, 2, 35)]
    u0 = [message("u", 0, 0, 15)]
    write(tmp_path / "rec", p0 + p1 + u0, {"t": 2, "u": 1}, 1 << 20)

    order = [(m.topic, m.partition, m.offset) for m in open_recording(tmp_path / "rec").replay_order()]
    assert order == [
        ("t", 0, 0),  # 10
        ("t", 1, 0),  # 15, before u-0 at 15: topic then partition break ties
        ("u", 0, 0),  # 15
        ("t", 1, 1),  # 25
        ("t", 0, 1),  # 30
        ("t", 0, 2),  # 20, late, but after its predecessor in partition 0
        ("t", 1, 2),  # 35
        ("t", 0, 3),  # 40
    ]


def test_the_same_records_give_the_same_bytes(tmp_path: Path) -> None:
    records = [message("t", 0, i, i) for i in range(50)]
    write(tmp_path / "a", records, {"t": 1}, 1 << 20)
    write(tmp_path / "b", records, {"t": 1}, 1 << 20)
    for name in ("t-0/segment-000001.jsonl.gz", MANIFEST):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_an_empty_recording_is_valid(tmp_path: Path) -> None:
    write(tmp_path / "rec", [], {"t": 3}, 1 << 20)
    recording = open_recording(tmp_path / "rec")
    assert recording.manifest.records == 0
    assert recording.manifest.first_ts is None
    assert list(recording.replay_order()) == []


def test_a_directory_that_is_not_a_recording_names_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(RecordingError, match="no such directory"):
        open_recording(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RecordingError, match=r"manifest\.json is missing"):
        open_recording(tmp_path / "empty")

    write(tmp_path / "rec", [message("t", 0, i, i) for i in range(3)], {"t": 1}, 1 << 20)
    (tmp_path / "rec" / "t-0" / "segment-000001.jsonl.gz").unlink()
    with pytest.raises(RecordingError, match=r"segment t-0/segment-000001\.jsonl\.gz is missing"):
        open_recording(tmp_path / "rec")


def test_a_manifest_of_another_format_or_version_is_refused(tmp_path: Path) -> None:
    write(tmp_path / "rec", [], {"t": 1}, 1 << 20)
    path = tmp_path / "rec" / MANIFEST
    manifest = json.loads(path.read_text())
    path.write_text(json.dumps({**manifest, "format_version": 99}))
    with pytest.raises(RecordingError, match="format_version 99; this cryptiq reads version 1"):
        open_recording(tmp_path / "rec")
    path.write_text(json.dumps({**manifest, "format": "something-else"}))
    with pytest.raises(RecordingError, match="not a CryptIQ recording manifest"):
        open_recording(tmp_path / "rec")
    path.write_text("{not json")
    with pytest.raises(RecordingError, match="not valid JSON"):
        open_recording(tmp_path / "rec")
    path.write_text(json.dumps({**manifest, "records": -1}))
    with pytest.raises(RecordingError, match="invalid at records"):
        open_recording(tmp_path / "rec")


def test_damaged_or_short_segments_fail_loudly_when_read(tmp_path: Path) -> None:
    write(tmp_path / "rec", [message("t", 0, i, i) for i in range(200)], {"t": 1}, 1 << 20)
    segment = tmp_path / "rec" / "t-0" / "segment-000001.jsonl.gz"
    whole = segment.read_bytes()
    segment.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(RecordingError, match=r"segment t-0/segment-000001\.jsonl\.gz is damaged"):
        list(open_recording(tmp_path / "rec").replay_order())

    lines = gzip.decompress(whole).splitlines(keepends=True)
    segment.write_bytes(gzip.compress(b"".join(lines[:-1])))
    with pytest.raises(RecordingError, match="holds 199 records, the manifest says 200"):
        list(open_recording(tmp_path / "rec").replay_order())

    segment.write_bytes(gzip.compress(b"".join(lines[:5]) + b'{"topic": "t"}\n'))
    with pytest.raises(RecordingError, match=r"segment-000001\.jsonl\.gz:6 is not a recorded record"):
        list(open_recording(tmp_path / "rec").replay_order())


def test_a_writer_refuses_a_used_directory_and_offsets_out_of_order(tmp_path: Path) -> None:
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "notes.txt").write_text("mine")
    with pytest.raises(RecordingError, match="not an empty directory"):
        RecordingWriter(tmp_path / "used")
    writer = RecordingWriter(tmp_path / "fresh")
    writer.write(message("t", 0, 5, 1))
    with pytest.raises(ValueError, match="offset 5 after 5"):
        writer.write(message("t", 0, 5, 2))
    writer.close({"t": 1})
