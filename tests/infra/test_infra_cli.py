"""`cryptiq infra up | status | down` as a user runs them: subprocesses with their own home.

These servers are independent of the session's (`endpoints` fixture); every test stops what it
started, pass or fail.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import infra
from config import load_settings
from infra.process import free_port

CRYPTIQ = Path(sys.executable).with_name("cryptiq")
# Settings that would make a server external, and the Tansu override: the CLI tests want the
# embedded servers whatever the developer's shell says.
_SCRUBBED = (
    "CRYPTIQ_CONFIG",
    "CRYPTIQ_KAFKA_BOOTSTRAP",
    "CRYPTIQ_REDIS_URL",
    "CRYPTIQ_POSTGRES_URL",
    "CALF_TANSU_BIN",
)


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    """A CRYPTIQ_HOME of its own; whatever the CLI started there is stopped afterwards."""
    home = tmp_path / "home"
    try:
        yield home
    finally:
        infra.down(load_settings().model_copy(update={"home": home}))


def cryptiq(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {key: value for key, value in os.environ.items() if key not in _SCRUBBED}
    environment.update(CRYPTIQ_HOME=str(home), **env)
    return subprocess.run(
        [str(CRYPTIQ), *args], env=environment, capture_output=True, text=True, timeout=120, check=False
    )


def status_json(home: Path, **env: str) -> tuple[int, dict[str, dict[str, Any]]]:
    result = cryptiq(home, "infra", "status", "--json", **env)
    return result.returncode, {row["name"]: row for row in json.loads(result.stdout)}


def test_up_status_up_again_restart_and_down(home: Path) -> None:
    started = time.monotonic()
    result = cryptiq(home, "infra", "up")
    up_seconds = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert "postgresql://postgres@127.0.0.1:" in result.stdout
    assert str(home) in result.stdout
    print(f"cold `cryptiq infra up` took {up_seconds:.2f}s")  # noqa: T201 - shown with -s, for the record

    code, rows = status_json(home)
    assert code == 0
    assert all(row["answering"] and row["kind"] == "embedded" for row in rows.values())
    pids = {name: row["pid"] for name, row in rows.items()}

    table = cryptiq(home, "infra", "status")
    assert table.returncode == 0
    assert "answering" in table.stdout

    again = cryptiq(home, "infra", "up")
    assert again.returncode == 0, again.stderr
    assert {name: row["pid"] for name, row in status_json(home)[1].items()} == pids

    # A server that died behind our back is started again; the others are reused.
    os.kill(pids["redis"], signal.SIGKILL)
    restarted = cryptiq(home, "infra", "up")
    assert restarted.returncode == 0, restarted.stderr
    code, rows = status_json(home)
    assert code == 0
    assert rows["redis"]["pid"] != pids["redis"]
    assert (rows["kafka"]["pid"], rows["postgres"]["pid"]) == (pids["kafka"], pids["postgres"])

    stopped = cryptiq(home, "infra", "down")
    assert stopped.returncode == 0, stopped.stderr
    assert "kafka" in stopped.stdout
    assert "postgres" in stopped.stdout

    code, rows = status_json(home)
    assert code == 1
    assert not any(row["answering"] for row in rows.values())
    assert cryptiq(home, "infra", "down").stdout.strip() == "no embedded server was running"


def test_a_missing_tansu_binary_is_one_line_without_traceback(home: Path) -> None:
    result = cryptiq(home, "infra", "up", CALF_TANSU_BIN="/nonexistent/tansu")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: Tansu broker binary not found")
    assert "CALF_TANSU_BIN" in lines[0]
    assert "Traceback" not in result.stderr


def test_an_external_redis_that_does_not_answer_shows_in_status_and_stops_up(home: Path) -> None:
    url = f"redis://:hunter2@127.0.0.1:{free_port()}/0"

    code, rows = status_json(home, CRYPTIQ_REDIS_URL=url)
    assert code == 1
    redis = rows["redis"]
    assert (redis["kind"], redis["answering"], redis["pid"]) == ("external", False, None)
    assert "hunter2" not in redis["where"]
    assert "***" in redis["where"]
    assert "CRYPTIQ_REDIS_URL" in redis["detail"]

    result = cryptiq(home, "infra", "up", CRYPTIQ_REDIS_URL=url)
    assert result.returncode == 2
    assert result.stderr.startswith("error: external redis at redis://:***@127.0.0.1:")
    assert "CRYPTIQ_REDIS_URL" in result.stderr
    assert "hunter2" not in result.stderr + result.stdout


def test_a_server_that_will_not_start_names_its_log_and_last_line(home: Path, tmp_path: Path) -> None:
    broken = tmp_path / "tansu"
    broken.write_text("#!/bin/sh\necho 'tansu: storage engine unavailable' >&2\nexit 3\n")
    broken.chmod(0o755)
    result = cryptiq(home, "infra", "up", CALF_TANSU_BIN=str(broken))
    assert result.returncode == 2
    assert result.stderr.startswith("error: kafka exited right after starting: read ")
    assert str(home / "logs" / "kafka.log") in result.stderr
    assert "last line: tansu: storage engine unavailable" in result.stderr
    assert "Traceback" not in result.stderr
