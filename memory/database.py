"""The Postgres engine every history writer shares (SQLAlchemy 2 async on asyncpg), and what its
failures mean: a server that is away is a `RetriableError`, a URL naming a database or user that
does not exist is a `ConfigError` (retrying never fixes it), anything else is a bug and propagates.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import asyncpg
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from config.errors import ConfigError, RetriableError

_ASYNCPG_SCHEME = "postgresql+asyncpg://"
_WHAT_TO_DO = "check postgres.url (CRYPTIQ_POSTGRES_URL) or run `cryptiq infra up`"
# asyncpg errors that say "the server is not there (yet)": restarting, full, or the link broke.
_TRANSIENT_ASYNCPG = (
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.OperatorInterventionError,
)
# ...and errors that say "the URL is wrong": no such database, no such user, wrong password.
_MISCONFIGURED_ASYNCPG = (asyncpg.InvalidCatalogNameError, asyncpg.InvalidAuthorizationSpecificationError)


def asyncpg_url(url: str) -> str:
    """`url` with the asyncpg driver named, whatever libpq-style scheme it came with.

    Local rather than `infra.to_sqlalchemy_url`: memory may not import infra (layers).
    """
    for scheme in (_ASYNCPG_SCHEME, "postgresql://", "postgres://"):
        if url.startswith(scheme):
            return _ASYNCPG_SCHEME + url[len(scheme) :]
    raise ValueError(f"not a Postgres URL: {url.rsplit('@', maxsplit=1)[-1]!r} (expected postgresql://...)")


def create_engine(url: str) -> AsyncEngine:
    """An async engine for `url` (postgresql:// or postgresql+asyncpg://).

    Pre-ping, so a pooled connection that died with a Postgres restart is replaced, not used.
    """
    return create_async_engine(asyncpg_url(url), pool_pre_ping=True)


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions on `engine` that keep loaded rows usable after commit."""
    return async_sessionmaker(engine, expire_on_commit=False)


@contextmanager
def translate_errors(during: str = "") -> Iterator[None]:
    """Re-raise Postgres failures inside the block as `RetriableError` or `ConfigError`.

    `during` ("while migrating") goes into the message after the server's role; URLs never do,
    since they may carry a password.
    """
    suffix = f" {during}" if during else ""
    try:
        yield
    except (OSError, TimeoutError, asyncpg.PostgresError, DBAPIError) as exc:
        cause = _asyncpg_cause(exc)
        if isinstance(cause, _MISCONFIGURED_ASYNCPG):
            raise ConfigError(
                f"postgres refused the connection{suffix}: {_first_line(cause)}; "
                "check postgres.url (CRYPTIQ_POSTGRES_URL)"
            ) from exc
        if (
            isinstance(exc, OSError | TimeoutError | OperationalError | InterfaceError)
            or isinstance(cause, _TRANSIENT_ASYNCPG)
            or (isinstance(exc, DBAPIError) and exc.connection_invalidated)
        ):
            raise RetriableError(f"postgres unreachable{suffix}: {_first_line(exc)}; {_WHAT_TO_DO}") from exc
        raise


def _asyncpg_cause(exc: BaseException) -> BaseException | None:
    """The asyncpg error under SQLAlchemy's wrappers (DBAPIError.orig, then its __cause__)."""
    seen: BaseException | None = exc
    for _ in range(5):  # the chain is two or three links deep; a bound guards against cycles
        if seen is None or isinstance(seen, asyncpg.PostgresError):
            return seen
        seen = getattr(seen, "orig", None) or seen.__cause__
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
