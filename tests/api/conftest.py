"""The ops API on the session's real Redis, Postgres (a fresh database per module) and Kafka.

Each module gets its own server (port 0), its own Redis namespace and users of every role; the
API's clock is a `FakeClock` (real time plus an offset the test moves) so tokens can expire and
rate limits can pass without sleeping.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from apitools import PASSWORD, ApiUnderTest, FakeClock

import infra
from config import Settings
from config.settings import ApiConfig, RedisConfig


@pytest.fixture(scope="module")
async def api(
    settings: Settings, endpoints: infra.Endpoints, fresh_db: str, engine: Any, kafka: dict[str, Any],
) -> AsyncIterator[ApiUnderTest]:
    from memory.users import UserStore
    from orchestrator.api import ApiServer

    namespace = f"apitest-{uuid.uuid4().hex[:8]}"
    api_settings = settings.model_copy(update={
        "redis": RedisConfig(url=settings.redis.url, namespace=namespace),
        "api": ApiConfig(jwt_secret="test-secret-of-32-bytes-or-more!", token_ttl_s=600, login_attempts=3,
                         login_window_s=60),
    })
    store = UserStore(engine)
    totp = {}
    for name, role in (("vera", "viewer"), ("otto", "operator"), ("ada", "admin")):
        totp[name] = (await store.add(name, role, PASSWORD)).totp_secret
    clock = FakeClock()
    server = ApiServer(api_settings, dataclasses.replace(endpoints, postgres_url=fresh_db),
                       host="127.0.0.1", port=0, clock=clock)
    await server.start()
    try:
        yield ApiUnderTest(server.url, api_settings, clock, totp, engine, kafka, endpoints.redis_url)
    finally:
        await server.stop()
