"""`RedisStateStore`: the StateStore port on Redis, so live state survives an agent restart.

Keys are `{namespace}:{scope}:{key}`: the namespace keeps several CryptIQ deployments apart on
one server, the scope (the agent's name) keeps agents apart within one. Redis being away is a
`RetriableError` (the runtime retries the message); bad credentials are a `ConfigError`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import redis.asyncio as redis_asyncio
from redis.exceptions import AuthenticationError, AuthorizationError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from config.errors import ConfigError, RetriableError

# Keys per SCAN round trip: large enough that a scope with thousands of keys takes a few calls.
_SCAN_COUNT = 1000
_GLOB_SPECIALS = frozenset("\\*?[]")
_WHAT_TO_DO = "check redis.url (CRYPTIQ_REDIS_URL) or run `cryptiq infra up`"


def connect_redis(url: str, *, timeout_s: float = 5.0) -> redis_asyncio.Redis:
    """A client for `url` that returns bytes (state is opaque bytes, never text).

    Connects lazily: an unreachable server shows up on the first command, as `RetriableError`.
    """
    return redis_asyncio.Redis.from_url(
        url, decode_responses=False, socket_connect_timeout=timeout_s, socket_timeout=timeout_s
    )


class RedisStateStore:
    """A StateStore over one Redis client, confined to `{namespace}:{scope}:`."""

    def __init__(self, client: redis_asyncio.Redis, namespace: str, scope: str) -> None:
        if not namespace or not scope:
            raise ValueError("namespace and scope must be non-empty, or stores would share keys")
        self._client = client
        self._prefix = f"{namespace}:{scope}:"

    async def load(self, key: str) -> bytes | None:
        with _translate_errors():
            value = await self._client.get(self._prefix + key)
        return None if value is None else bytes(value)

    async def save(self, key: str, value: bytes) -> None:
        with _translate_errors():
            await self._client.set(self._prefix + key, bytes(value))

    async def delete(self, key: str) -> None:
        with _translate_errors():
            await self._client.delete(self._prefix + key)

    async def keys(self, prefix: str = "") -> list[str]:
        # SCAN, not KEYS: KEYS blocks the whole server while it walks every key.
        pattern = _escape_glob(self._prefix + prefix) + "*"
        found: set[str] = set()  # SCAN may return a key more than once
        with _translate_errors():
            async for raw in self._client.scan_iter(match=pattern, count=_SCAN_COUNT):
                name = raw.decode() if isinstance(raw, bytes) else str(raw)
                found.add(name.removeprefix(self._prefix))
        return sorted(found)


def _escape_glob(text: str) -> str:
    """`text` as a literal in a Redis MATCH pattern (a key may contain `*`, `?`, `[` or `]`)."""
    return "".join(f"\\{char}" if char in _GLOB_SPECIALS else char for char in text)


@contextmanager
def _translate_errors() -> Iterator[None]:
    try:
        yield
    except (AuthenticationError, AuthorizationError) as exc:
        # Subclasses of ConnectionError, but retrying never fixes a wrong password.
        raise ConfigError(
            f"redis refused the credentials: {exc}; check redis.url (CRYPTIQ_REDIS_URL)"
        ) from exc
    except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
        raise RetriableError(f"redis unreachable: {exc}; {_WHAT_TO_DO}") from exc
