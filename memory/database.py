"""The Postgres engine every history writer shares: SQLAlchemy 2 async on asyncpg."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine


def asyncpg_url(url: str) -> str:
    """`url` with the asyncpg driver named, whatever libpq-style scheme it came with."""
    for scheme in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
        if url.startswith(scheme):
            return "postgresql+asyncpg://" + url[len(scheme) :]
    raise ValueError(f"not a Postgres URL: {url.rsplit('@', maxsplit=1)[-1]!r} (expected postgresql://...)")


def create_engine(url: str) -> AsyncEngine:
    """An async engine for `url` (postgresql:// or postgresql+asyncpg://)."""
    return create_async_engine(asyncpg_url(url), pool_pre_ping=True)


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions on `engine` that keep loaded rows usable after commit."""
    return async_sessionmaker(engine, expire_on_commit=False)
