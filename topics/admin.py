"""Create the registry's topics on a broker, idempotently (`cryptiq infra up` calls this)."""

from __future__ import annotations

from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from config import RetriableError
from topics.registry import REGISTRY, TopicRegistry


class TopicCreationError(RetriableError):
    """The broker refused to create a topic; the message carries its error code."""


async def ensure_topics(
    client_kwargs: dict[str, Any],
    *,
    default_partitions: int,
    replication_factor: int = 1,
    registry: TopicRegistry = REGISTRY,
) -> list[str]:
    """Create every missing topic of `registry`; return the names that were created.

    `client_kwargs` are the aiokafka connection arguments (bootstrap_servers, security, ...).
    """
    admin = AIOKafkaAdminClient(**client_kwargs)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(
                spec.name,
                num_partitions=spec.partitions or default_partitions,
                replication_factor=replication_factor,
                topic_configs=spec.topic_configs(),
            )
            for spec in registry
            if spec.name not in existing
        ]
        if missing:
            response = await admin.create_topics(missing)
            for name, code, message in _topic_errors(response):
                if code not in (0, TopicAlreadyExistsError.errno):
                    raise TopicCreationError(
                        f"creating topic {name} failed with broker error {code}: {message}"
                    )
        return [topic.name for topic in missing]
    finally:
        await admin.close()


def _topic_errors(response: Any) -> list[tuple[str, int, str | None]]:
    rows = []
    for entry in response.topic_errors:
        name, code = entry[0], entry[1]
        message = entry[2] if len(entry) > 2 else None
        rows.append((name, code, message))
    return rows
