"""Embedded infrastructure: Kafka-protocol (Tansu), Redis and Postgres for a laptop or a test run.

`up(settings)` starts what the settings do not point elsewhere and returns the `Endpoints`;
`endpoints(settings)` finds them again without starting anything; `status` and `down` inspect
and stop. `kafka_client_kwargs` is how every aiokafka client is configured.
"""

from infra.endpoints import Endpoints, to_sqlalchemy_url
from infra.errors import (
    BinaryNotFoundError,
    InfraError,
    InfraNotRunningError,
    PortInUseError,
    ServerNotAnsweringError,
    ServerStartError,
)
from infra.kafka_client import install_leave_group_fix, kafka_client_kwargs
from infra.manager import SERVICES, ServiceStatus, down, endpoints, status, up

__all__ = [
    "SERVICES",
    "BinaryNotFoundError",
    "Endpoints",
    "InfraError",
    "InfraNotRunningError",
    "PortInUseError",
    "ServerNotAnsweringError",
    "ServerStartError",
    "ServiceStatus",
    "down",
    "endpoints",
    "install_leave_group_fix",
    "kafka_client_kwargs",
    "status",
    "to_sqlalchemy_url",
    "up",
]
