"""`cryptiq record` and `cryptiq replay` as a user runs them, against the session's servers.

The subprocesses find the embedded servers through CRYPTIQ_HOME. The recorded topic is a fresh
one per test run, so `--from-beginning` records exactly what the test produced.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from busio import collect, produce
from config import Settings
from factories import candle_series
from topics.admin import ensure_topics
from topics.registry import TopicRegistry, TopicSpec

CRYPTIQ = Path(sys.executable).with_name("cryptiq")


async def cryptiq(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, CRYPTIQ_HOME=str(settings.home))
    return await asyncio.to_thread(
        subprocess.run, [str(CRYPTIQ), *args], env=env, capture_output=True, text=True, timeout=60,
        check=False,
    )


async def one_line_error(settings: Settings, *args: str) -> str:
    """The error line of a `cryptiq` run that must fail with exit code 2 and one line on stderr."""
    result = await cryptiq(settings, *args)
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


async def test_record_until_idle_then_replay_at_max_speed_into_a_prefix(
    settings: Settings, kafka: dict[str, Any], tmp_path: Path,
) -> None:
    topic = f"cli-src-{uuid.uuid4().hex[:8]}"
    await ensure_topics(
        kafka, default_partitions=1,
        registry=TopicRegistry((TopicSpec(topic, "cli test input", "candle key", (), partitions=3),)),
    )
    candles = candle_series(12, symbol="CLI/A") + candle_series(12, symbol="CLI/B")
    await produce(kafka, topic, candles)

    out = tmp_path / "rec"
    recorded = await cryptiq(
        settings, "record", "--topics", topic, "--out", str(out), "--from-beginning", "--until-idle", "1",
    )
    assert recorded.returncode == 0, recorded.stderr
    assert recorded.stdout.strip() == f"recorded 24 records of {topic} into {out}"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["records"] == 24
    assert manifest["topics"] == {topic: {"partitions": 3, "records": 24}}
    assert manifest["first_ts"] == min(env.ts for env in candles)

    replayed = await cryptiq(settings, "replay", str(out), "--speed", "max", "--into", "cli.")
    assert replayed.returncode == 0, replayed.stderr
    assert replayed.stdout.startswith(f"replayed 24 of 24 records into cli.{topic} in ")
    records = await collect(kafka, f"cli.{topic}", until=lambda got: len(got) >= 24)
    assert sorted(r.value for r in records) == sorted(
        r.value for r in await collect(kafka, topic, until=lambda got: len(got) >= 24)
    )
    assert {r.timestamp for r in records} == {env.ts for env in candles}


async def test_record_and_replay_errors_are_one_line(
    settings: Settings, kafka: dict[str, Any], tmp_path: Path,
) -> None:
    record = ("record", "--topics")
    unknown = await one_line_error(settings, *record, "no.such.topic", "--out", str(tmp_path / "x"))
    assert "unknown topic 'no.such.topic': it is not on the broker; registry topics: " in unknown
    assert "market.candles" in unknown  # names what exists
    assert not (tmp_path / "x").exists()

    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "file").write_text("keep me")
    used = await one_line_error(settings, *record, "market.candles", "--out", str(tmp_path / "used"))
    assert "not an empty directory" in used

    (tmp_path / "empty").mkdir()
    missing = await one_line_error(settings, "replay", str(tmp_path / "empty"))
    assert "manifest.json is missing" in missing

    for speed in ("fast", "0", "-10", "nan", "inf"):
        bad = await one_line_error(settings, "replay", str(tmp_path / "empty"), "--speed", speed)
        assert f"--speed must be max or a positive number such as 1, 10 or 60, got {speed!r}" in bad

    prefix = await one_line_error(settings, "replay", str(tmp_path / "empty"), "--into", "a b")
    assert "--into prefix 'a b'" in prefix

    count = await one_line_error(settings, *record, "market.candles", "--out", "y", "--max-records", "0")
    assert "--max-records" in count
