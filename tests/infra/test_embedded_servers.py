"""Round trips on the session's servers: what every other test relies on actually works."""

from __future__ import annotations

import asyncio
import uuid

import redis.asyncio as redis_asyncio
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

import infra
from config import Settings


async def test_redis_stores_and_returns_a_value(endpoints: infra.Endpoints) -> None:
    client = redis_asyncio.from_url(endpoints.redis_url)
    key = f"test:{uuid.uuid4().hex}"
    try:
        await client.set(key, "42", ex=60)
        assert await client.get(key) == b"42"
    finally:
        await client.delete(key)
        await client.aclose()


async def test_postgres_creates_inserts_and_selects_in_the_cryptiq_database(
    endpoints: infra.Endpoints, settings: Settings
) -> None:
    engine = create_async_engine(endpoints.postgres_sqlalchemy_url)
    table = f"roundtrip_{uuid.uuid4().hex[:12]}"
    try:
        async with engine.begin() as connection:
            assert await connection.scalar(text("SELECT current_database()")) == settings.postgres.database
            await connection.execute(text(f"CREATE TABLE {table} (id int PRIMARY KEY, note text)"))
            await connection.execute(text(f"INSERT INTO {table} VALUES (1, 'filled')"))
        async with engine.connect() as connection:
            rows = (await connection.execute(text(f"SELECT id, note FROM {table}"))).all()
            assert [tuple(row) for row in rows] == [(1, "filled")]
            await connection.execute(text(f"DROP TABLE {table}"))
            await connection.commit()
    finally:
        await engine.dispose()


async def test_kafka_produces_and_consumes_a_message_on_a_fresh_topic(
    endpoints: infra.Endpoints, settings: Settings
) -> None:
    kwargs = infra.kafka_client_kwargs(settings.kafka, endpoints.kafka_bootstrap)
    topic = f"test.roundtrip.{uuid.uuid4().hex[:12]}"
    admin = AIOKafkaAdminClient(**kwargs)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()

    producer = AIOKafkaProducer(**kwargs)
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"candle closed", key=b"binance:BTC/USDT:1m")
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(**kwargs, auto_offset_reset="earliest", enable_auto_commit=False)
    consumer.assign([TopicPartition(topic, 0)])
    await consumer.start()
    try:
        message = await asyncio.wait_for(consumer.getone(), timeout=15)
    finally:
        await consumer.stop()
    assert (message.key, message.value) == (b"binance:BTC/USDT:1m", b"candle closed")


def test_endpoints_finds_the_running_servers_without_starting_anything(
    endpoints: infra.Endpoints, settings: Settings
) -> None:
    assert infra.endpoints(settings) == endpoints
    assert {row.name: row.answering for row in infra.status(settings)} == {
        "kafka": True,
        "redis": True,
        "postgres": True,
    }
