"""`cryptiq train regime` in a subprocess: prints the forest/rules/majority table and registers the forest."""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pandas as pd
import pytest

from config import Settings
from infra import Endpoints
from memory.database import create_engine
from memory.model_registry import ModelRegistry
from orchestrator.regime import ForestDetector

CRYPTIQ = Path(sys.executable).with_name("cryptiq")


def cryptiq(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, CRYPTIQ_HOME=str(home), CRYPTIQ_LOG_LEVEL="WARNING")
    return subprocess.run([str(CRYPTIQ), *args], env=env, capture_output=True, text=True, timeout=120,
                          check=False)


@pytest.fixture(scope="module")
def candle_files(bundled: dict[str, pd.DataFrame], tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("regime")
    paths = []
    for symbol in ("BTC/USDT", "ETH/USDT"):
        path = folder / f"{symbol.replace('/', '_')}-1h.csv"
        bundled[symbol].drop(columns=["symbol"], errors="ignore").iloc[:2500].to_csv(path, index=False)
        paths.append(path)
    return paths


async def test_train_regime_prints_the_comparison_and_registers_a_loadable_forest(
    settings: Settings, endpoints: Endpoints, candle_files: list[Path],
) -> None:
    name = f"regime_{uuid.uuid4().hex[:8]}"
    args = ["train", "regime", "--horizon", "12", "--folds", "3", "--trees", "8", "--min-leaf", "50",
            "--name", name]
    for path in candle_files:
        args += ["--data", str(path)]
    done = await asyncio.to_thread(cryptiq, *args, home=settings.home)
    assert done.returncode == 0, done.stderr
    assert "regime detection, walk-forward out of sample (3 windows)" in done.stdout
    for row in ("forest", "rules", "majority", "high_volatility"):
        assert row in done.stdout
    assert f"registered {name} v1: " in done.stdout

    engine = create_engine(endpoints.postgres_url)
    try:
        record = await ModelRegistry(engine).latest(name)
    finally:
        await engine.dispose()
    assert record is not None
    assert record.params["horizon"] == 12
    assert record.params["n_estimators"] == 8
    assert record.params["data"] == [str(path) for path in candle_files]
    assert record.metrics["windows"] == 3
    assert 0 < record.metrics["forest"]["accuracy"] < 1
    assert 0 < record.metrics["rules"]["accuracy"] < 1
    payload = await asyncio.to_thread(Path(record.path).read_bytes)
    assert hashlib.sha256(payload).hexdigest() == record.sha256
    assert ForestDetector.load(payload, record.sha256, record.version).version == 1


@pytest.mark.parametrize(("args", "message"), [
    (("--data", "/no/such/file.csv"), "error: candle file /no/such/file.csv does not exist"),
    (("--horizon", "1"), "error: Invalid value for '--horizon'"),
    (("--min-leaf", "100000"), "error: only "),
    (("--name", "bad name"), "error: --name 'bad name'"),
])
def test_mistakes_are_one_line_errors_with_exit_code_2(
    settings: Settings, endpoints: Endpoints, candle_files: list[Path], args: tuple[str, ...], message: str,
) -> None:
    given = ("--data", str(candle_files[0]), *args) if args[0] != "--data" else args
    done = cryptiq("train", "regime", *given, home=settings.home)
    assert done.returncode == 2
    assert done.stderr.startswith(message), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
