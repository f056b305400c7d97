"""Probes: does a Kafka, Redis or Postgres server answer a real request within a timeout?

Each probe returns None when the server answered and raises otherwise; the caller decides
whether that means "not ready yet" or "report an error".
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import asyncpg
import redis.asyncio as redis_asyncio
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import KafkaError
from redis.exceptions import RedisError

from config.settings import KafkaConfig
from infra.kafka_client import kafka_client_kwargs

# What a probe raises when the server does not (yet) answer; anything else is a bug.
PROBE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    KafkaError,
    RedisError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
)


async def probe_tcp(host: str, port: int, timeout_s: float) -> None:
    """Open and close a TCP connection; cheap, and keeps client libraries from logging refusals."""
    _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout_s)
    writer.close()
    await writer.wait_closed()


async def probe_kafka(config: KafkaConfig, bootstrap: str, timeout_s: float) -> None:
    """Fetch cluster metadata with the configured security settings."""
    await _probe_any_tcp(bootstrap, timeout_s)
    kwargs = kafka_client_kwargs(config, bootstrap)
    client = AIOKafkaClient(**kwargs, request_timeout_ms=int(timeout_s * 1000))
    try:
        await asyncio.wait_for(client.bootstrap(), timeout_s)
    finally:
        await client.close()


async def _probe_any_tcp(bootstrap: str, timeout_s: float) -> None:
    errors: list[BaseException] = []
    for server in bootstrap.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            await probe_tcp(host.strip("[]"), int(port), timeout_s)
        except (OSError, TimeoutError) as exc:
            errors.append(exc)
        else:
            return
    raise ConnectionError(f"no bootstrap server accepts connections: {errors[-1]}")


async def probe_redis(url: str, timeout_s: float) -> None:
    """PING the server."""
    client = redis_asyncio.from_url(url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s)
    try:
        await client.ping()
    finally:
        await client.aclose()


async def probe_postgres(url: str, timeout_s: float) -> None:
    """Open a real connection and run `SELECT 1`."""
    parts = urlsplit(url)
    if parts.hostname and parts.port:
        await probe_tcp(parts.hostname, parts.port, timeout_s)
    connection = await asyncpg.connect(url, timeout=timeout_s)
    try:
        await connection.fetchval("SELECT 1")
    finally:
        await connection.close()
