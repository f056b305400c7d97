"""`cryptiq agent echo` as an operator runs it: a process stopped with SIGTERM and started again.

The agent must drain and commit on SIGTERM, so the second process resumes exactly where the
first stopped: every input is echoed once, none twice, none missed, while a producer keeps
publishing throughout.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import orjson

from agents.catalog import AGENTS
from busio import Tail, end_offsets, produce
from config import Settings
from factories import candle_series
from infra import Endpoints
from topics.registry import DIAGNOSTICS_ECHO, MARKET_CANDLES

CRYPTIQ = Path(sys.executable).with_name("cryptiq")
TOTAL = 4000
CHUNK = 50  # every 50 ms: the producer runs for ~4 s, through the stop and the restart


def start_agent(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ, CRYPTIQ_HOME=str(settings.home), CRYPTIQ_LOG_FORMAT="json",
               CRYPTIQ_LOG_LEVEL="INFO")
    with log.open("ab") as out:
        return subprocess.Popen([str(CRYPTIQ), "agent", "echo"], env=env, stdout=out, stderr=out)


async def stop_agent(process: subprocess.Popen[bytes]) -> int:
    process.send_signal(signal.SIGTERM)
    for _ in range(300):
        if process.poll() is not None:
            return process.returncode
        await asyncio.sleep(0.1)
    process.kill()
    raise AssertionError("agent did not stop within 30 s of SIGTERM")


async def wait_logged(log: Path, event: str, count: int, timeout: float = 30.0) -> bool:
    for _ in range(int(timeout / 0.05)):
        if sum(e.get("event") == event for e in log_events(log)) >= count:
            return True
        await asyncio.sleep(0.05)
    return False


def log_events(log: Path) -> list[dict[str, Any]]:
    lines = [line for line in log.read_text().splitlines() if line.startswith("{")]
    return [json.loads(line) for line in lines]


async def test_sigterm_drains_and_a_restart_resumes_with_no_duplicate_and_no_gap(
    settings: Settings, endpoints: Endpoints, kafka: dict[str, Any], tmp_path: Path,
) -> None:
    candles = candle_series(TOTAL, start=10_000 * 3_600_000, symbol="RE/START")
    wanted = {env.event_id for env in candles}
    log = tmp_path / "agent.log"

    def ours(records: list[Any]) -> list[str]:
        ids = (orjson.loads(record.value)["payload"]["of_event_id"] for record in records)
        return [event_id for event_id in ids if event_id in wanted]

    async def publish_slowly() -> None:
        for i in range(0, TOTAL, CHUNK):
            await produce(kafka, MARKET_CANDLES.name, candles[i : i + CHUNK])
            await asyncio.sleep(0.05)

    start = await end_offsets(kafka, DIAGNOSTICS_ECHO.name)
    async with Tail(kafka, DIAGNOSTICS_ECHO.name, start) as tail:
        first = start_agent(settings, log)
        producer = asyncio.create_task(asyncio.sleep(0))
        try:
            assert await wait_logged(log, "agent ready", 1), log.read_text()[-3000:]
            producer = asyncio.create_task(publish_slowly())
            assert await tail.wait_for(lambda got: len(ours(got)) >= 500), log.read_text()[-3000:]
            assert await stop_agent(first) == 0, log.read_text()[-3000:]
            echoed_by_first = len(ours(tail.records))

            second = start_agent(settings, log)
            try:
                await producer
                assert await tail.wait_for(lambda got: len(set(ours(got))) == TOTAL, timeout=60), (
                    f"{len(set(ours(tail.records)))} of {TOTAL} echoed\n" + log.read_text()[-3000:]
                )
                await asyncio.sleep(1.0)  # a duplicate, if any, would arrive now
            finally:
                assert await stop_agent(second) == 0, log.read_text()[-3000:]
        finally:
            producer.cancel()
            if first.poll() is None:
                first.kill()

    counts = Counter(ours(tail.records))
    assert set(counts) == wanted
    assert [event_id for event_id, n in counts.items() if n > 1] == []
    assert echoed_by_first < TOTAL, "the first agent was stopped after the end: nothing was resumed"

    events = log_events(log)
    ready = [event for event in events if event.get("event") == "agent ready"]
    assert len(ready) == 2
    assert all(event["after_s"] < 5.0 for event in ready), ready
    assert all(event["agent"] == "echo" for event in ready)
    stopped = [event for event in events if event.get("event") == "agent stopped"]
    assert len(stopped) == 2
    assert sum(event["processed"] for event in stopped) >= TOTAL


def run_cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    scrubbed = ("CRYPTIQ_CONFIG", "CRYPTIQ_KAFKA_BOOTSTRAP", "CRYPTIQ_REDIS_URL", "CRYPTIQ_POSTGRES_URL")
    env = {key: value for key, value in os.environ.items() if key not in scrubbed}
    env["CRYPTIQ_HOME"] = str(home)
    return subprocess.run(
        [str(CRYPTIQ), *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_agent_command_errors_are_one_line_and_list_shows_the_agents(tmp_path: Path) -> None:
    unknown = run_cli(tmp_path, "agent", "nope")
    assert unknown.returncode == 2
    assert unknown.stderr.strip() == f"error: unknown agent 'nope'; known agents: {', '.join(sorted(AGENTS))}"

    not_up = run_cli(tmp_path, "agent", "echo")
    assert not_up.returncode == 2
    assert len(not_up.stderr.strip().splitlines()) == 1, not_up.stderr
    assert "cryptiq infra up" in not_up.stderr
    assert "Traceback" not in not_up.stderr

    listed = run_cli(tmp_path, "agent", "--list")
    assert listed.returncode == 0
    assert [line.split()[0] for line in listed.stdout.splitlines()] == sorted(AGENTS)
    assert {"echo", "market_data", "scanner", "technical"} <= set(AGENTS)

    bad_option = run_cli(tmp_path, "run", "--agents", "echo,nope")
    assert bad_option.returncode == 2
    assert "unknown agent 'nope'" in bad_option.stderr
