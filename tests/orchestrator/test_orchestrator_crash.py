"""`cryptiq agent orchestrator` killed mid-stream (SIGKILL) and started again: the intents on the topic
are exactly those of an uninterrupted run, none missing and none twice.

The process commits its input only every 60 s here, so when it is killed every intent it has
published so far sits in input it has not committed: the restarted process reads those candles
again and makes the same intents again. It must find them on `strategy.intents` and not publish
them a second time.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
from orchestrator_data import real_candles
from test_orchestrator_agent import start_group_at_log_end

from agents.orchestrator import OrchestratorAgent, OrchestratorCore
from busio import Tail, end_offsets, produce
from config import Settings
from config.settings import OrchestratorConfig
from infra import Endpoints
from topics.registry import MARKET_CANDLES, STRATEGY_INTENTS
from topics.serialization import encode

CRYPTIQ = Path(sys.executable).with_name("cryptiq")
CHUNK = 40


def start_orchestrator(settings: Settings, regime_model: str, log: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ, CRYPTIQ_HOME=str(settings.home), CRYPTIQ_LOG_FORMAT="json",
               CRYPTIQ_LOG_LEVEL="INFO", CRYPTIQ_AGENTS_COMMIT_INTERVAL_S="60",
               CRYPTIQ_ORCHESTRATOR_REGIME_MODEL=regime_model, CRYPTIQ_ORCHESTRATOR_SIGNALS="false")
    with log.open("ab") as out:
        return subprocess.Popen([str(CRYPTIQ), "agent", "orchestrator"], env=env, stdout=out, stderr=out)


def logged(log: Path) -> str:
    return log.read_text() if log.exists() else ""


async def wait_for_log(log: Path, text: str, count: int = 1, timeout: float = 60) -> None:
    for _ in range(int(timeout / 0.1)):
        if logged(log).count(text) >= count:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{text!r} not logged {count} time(s) within {timeout} s:\n{logged(log)[-3000:]}")


async def test_a_killed_orchestrator_restarts_without_a_duplicate_or_a_missing_intent(
    settings: Settings, endpoints: Endpoints, kafka: dict[str, Any], tmp_path: Path,
) -> None:
    suffix = uuid.uuid4().hex[:8].upper()
    names = {"BTC/USDT": f"BTC{suffix}/USDT", "ETH/USDT": f"ETH{suffix}/USDT"}
    regime_model = f"regime_{suffix}"  # none registered: the rule detector, as in the core run below
    candles = real_candles(rows=900, rename=names)
    core = OrchestratorCore(OrchestratorConfig(regime_model=regime_model, signals=False))
    made = [out for env in candles for out in core.handle(env)]
    expected = Counter(encode(env) for env in made if env.type == "OrderIntent")
    assert sum(expected.values()) >= 6

    def ours(records: list[Any]) -> list[bytes]:
        return [r.value for r in records if suffix in orjson.loads(r.value)["payload"]["symbol"]]

    await start_group_at_log_end(kafka, OrchestratorAgent.name, MARKET_CANDLES.name)
    start = await end_offsets(kafka, STRATEGY_INTENTS.name)
    log = tmp_path / "orchestrator.log"
    async with Tail(kafka, STRATEGY_INTENTS.name, start) as tail:
        first = start_orchestrator(settings, regime_model, log)
        try:
            await wait_for_log(log, '"agent ready"')
            for i in range(0, len(candles), CHUNK):  # paced, so the kill lands mid-stream
                await produce(kafka, MARKET_CANDLES.name, candles[i : i + CHUNK])
                await asyncio.sleep(0.05)
                if len(ours(tail.records)) >= sum(expected.values()) // 3:
                    break
            else:
                raise AssertionError("the first process published too few intents before the input ran out")
            first.send_signal(signal.SIGKILL)
            assert first.wait(10) == -signal.SIGKILL
            killed_at = len(ours(tail.records))
            sent = i + CHUNK
        finally:
            if first.poll() is None:
                first.kill()

        second = start_orchestrator(settings, regime_model, log)
        try:
            await wait_for_log(log, '"agent ready"', count=2)
            await produce(kafka, MARKET_CANDLES.name, candles[sent:])
            for _ in range(600):
                if len(ours(tail.records)) >= sum(expected.values()):
                    break
                await asyncio.sleep(0.1)
            await asyncio.sleep(3)  # time for a duplicate to show up, if one were coming
        finally:
            second.send_signal(signal.SIGTERM)
            try:
                second.wait(30)
            except subprocess.TimeoutExpired:
                second.kill()

    got = Counter(ours(tail.records))
    assert killed_at >= 2
    assert got == expected, (
        f"duplicates: {sum((got - expected).values())}, missing: {sum((expected - got).values())}"
    )
