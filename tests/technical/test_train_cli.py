"""`cryptiq train technical` in a subprocess, as a user runs it: trains, reports, registers; errors."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from technical_data import candle_frame

from config import Settings
from infra import Endpoints
from memory.database import create_engine
from memory.model_registry import ModelRegistry

CRYPTIQ = Path(sys.executable).with_name("cryptiq")


def cryptiq(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, CRYPTIQ_HOME=str(home), CRYPTIQ_LOG_LEVEL="WARNING")
    command = [str(CRYPTIQ), *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def candle_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("train") / "BTC_USDT-1h.csv"
    candle_frame("BTC/USDT").iloc[:2500].to_csv(path, index=False)
    return path


async def test_train_technical_registers_a_new_version_with_its_walk_forward_metrics(
    settings: Settings, endpoints: Endpoints, candle_file: Path,
) -> None:
    name = f"cli_{uuid.uuid4().hex[:8]}"
    args = ("train", "technical", "--data", str(candle_file), "--horizon", "6", "--folds", "3",
            "--min-leaf", "100", "--max-depth", "3", "--name", name)
    done = cryptiq(*args, home=settings.home)
    assert done.returncode == 0, done.stderr
    assert "walk-forward, out of sample" in done.stdout
    assert "all windows" in done.stdout
    assert f"registered {name} v1: " in done.stdout
    again = cryptiq(*args, home=settings.home)
    assert f"registered {name} v2: " in again.stdout

    engine = create_engine(endpoints.postgres_url)
    try:
        versions = await ModelRegistry(engine).versions(name)
    finally:
        await engine.dispose()
    assert [record.version for record in versions] == [1, 2]
    record = versions[-1]
    assert Path(record.path).parent == settings.home.resolve() / "models"
    assert await asyncio.to_thread(Path(record.path).is_file)
    assert record.params["horizon"] == 6
    assert record.params["fee"] == settings.technical.fee  # the config's, as --fee was not given
    assert record.params["data"] == [str(candle_file)]
    assert len(record.metrics["folds"]) == 3
    assert 0 < record.metrics["accuracy"] < 1
    assert record.metrics["rows"] > 2000


@pytest.mark.parametrize(("args", "message"), [
    (("--data", "/no/such/file.csv"), "error: candle file /no/such/file.csv does not exist"),
    (("--horizon", "0"), "error: Invalid value for '--horizon'"),
    (("--min-leaf", "1000"), "error: only "),
])
def test_mistakes_are_one_line_errors_with_exit_code_2(
    settings: Settings, endpoints: Endpoints, candle_file: Path, args: tuple[str, ...], message: str,
) -> None:
    given = ("--data", str(candle_file), *args) if args[0] != "--data" else args
    done = cryptiq("train", "technical", *given, home=settings.home)
    assert done.returncode == 2
    assert done.stderr.startswith(message), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_training_needs_the_servers_to_register_and_says_so(candle_file: Path, tmp_path: Path) -> None:
    done = cryptiq("train", "technical", "--data", str(candle_file), home=tmp_path)  # nothing runs there
    assert done.returncode == 2
    assert done.stderr.startswith("error: embedded infrastructure is not running"), done.stderr
    assert "cryptiq infra up" in done.stderr
