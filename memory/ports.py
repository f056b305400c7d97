"""The state-store port: the only storage an agent core sees.

An agent keeps small, serialisable state (indicator windows, cooldowns, positions) under string
keys within its own scope. `InMemoryStateStore` serves unit tests and backtests;
`memory.redis_store.RedisStateStore` serves live agents. Both pass the same contract tests.
"""

from __future__ import annotations

from typing import Protocol


class StateStore(Protocol):
    """Bytes under string keys, namespaced per agent by whoever builds the store."""

    async def load(self, key: str) -> bytes | None:
        """The bytes saved under `key`, or None if nothing is."""
        ...

    async def save(self, key: str, value: bytes) -> None:
        """Store `value` under `key`, replacing what was there."""
        ...

    async def delete(self, key: str) -> None:
        """Forget `key` (no error if it was never saved)."""
        ...

    async def keys(self, prefix: str = "") -> list[str]:
        """Every saved key that starts with `prefix`, sorted."""
        ...


class InMemoryStateStore:
    """A StateStore in a dict: for unit tests, backtests and agents that keep nothing."""

    def __init__(self) -> None:
        self._data: dict[str, bytes] = {}

    async def load(self, key: str) -> bytes | None:
        return self._data.get(key)

    async def save(self, key: str, value: bytes) -> None:
        self._data[key] = bytes(value)

    async def delete(self, key: str) -> None:
        self._data.pop(key, None)

    async def keys(self, prefix: str = "") -> list[str]:
        return sorted(key for key in self._data if key.startswith(prefix))
