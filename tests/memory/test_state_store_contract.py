"""One contract for every StateStore: the in-memory one and Redis (the session's real server)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable

import pytest

from config.errors import RetriableError
from infra import Endpoints
from infra.process import free_port
from memory.ports import InMemoryStateStore, StateStore
from memory.redis_store import RedisStateStore, connect_redis

StoreMaker = Callable[[str], StateStore]


@pytest.fixture(params=["memory", "redis"])
async def make_store(request: pytest.FixtureRequest) -> AsyncIterator[StoreMaker]:
    """A factory of stores for scopes of one fresh namespace (shared data per scope, like Redis)."""
    if request.param == "memory":
        stores: dict[str, InMemoryStateStore] = {}
        yield lambda scope: stores.setdefault(scope, InMemoryStateStore())
        return
    endpoints: Endpoints = request.getfixturevalue("endpoints")
    client = connect_redis(endpoints.redis_url)
    namespace = f"test-{uuid.uuid4().hex[:8]}"
    try:
        yield lambda scope: RedisStateStore(client, namespace, scope)
    finally:
        keys = [key async for key in client.scan_iter(match=f"{namespace}:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


async def test_round_trip_overwrite_and_delete(make_store: StoreMaker) -> None:
    store = make_store("agent")
    assert await store.load("missing") is None
    await store.save("a", b"1")
    assert await store.load("a") == b"1"
    await store.save("a", b"2")
    assert await store.load("a") == b"2"
    await store.delete("a")
    assert await store.load("a") is None
    await store.delete("never-saved")  # no error


async def test_binary_values_survive_untouched(make_store: StoreMaker) -> None:
    store = make_store("agent")
    value = bytes(range(256)) + b"\x00tail"
    await store.save("bin", value)
    assert await store.load("bin") == value


async def test_keys_by_prefix_treat_glob_characters_literally(make_store: StoreMaker) -> None:
    store = make_store("agent")
    for key in ("a*[b]:1", "a*[b]:2", "aX[b]:3", "ab", "other"):
        await store.save(key, b"x")
    assert await store.keys("a*[b]") == ["a*[b]:1", "a*[b]:2"]
    assert await store.keys("a") == ["a*[b]:1", "a*[b]:2", "aX[b]:3", "ab"]
    assert await store.keys() == ["a*[b]:1", "a*[b]:2", "aX[b]:3", "ab", "other"]


async def test_scopes_do_not_see_each_other(make_store: StoreMaker) -> None:
    technical, risk = make_store("technical"), make_store("risk")
    await technical.save("state", b"t")
    await risk.save("state", b"r")
    assert await technical.load("state") == b"t"
    assert await risk.load("state") == b"r"
    await technical.delete("state")
    assert await risk.load("state") == b"r"
    assert await technical.keys() == []


async def test_redis_that_does_not_answer_is_a_retriable_error() -> None:
    client = connect_redis(f"redis://127.0.0.1:{free_port()}/0")
    store = RedisStateStore(client, "test", "agent")
    try:
        # Factories, not coroutines: a coroutine created but never awaited is a warning (an error here).
        for attempt in (lambda: store.load("k"), lambda: store.save("k", b"v"), store.keys):
            with pytest.raises(RetriableError, match="redis unreachable"):
                await attempt()
    finally:
        await client.aclose()
