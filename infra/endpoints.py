"""`Endpoints`: where Kafka, Redis and Postgres answer, whether embedded or external.

The one object the rest of CryptIQ receives to reach the servers. Its URLs may carry
passwords, so its repr redacts them.
"""

from __future__ import annotations

from dataclasses import dataclass

from config.settings import redact_url

_ASYNCPG_SCHEME = "postgresql+asyncpg"


@dataclass(frozen=True, repr=False)
class Endpoints:
    """Addresses of the three servers; `*_embedded` is False where the settings name an external one."""

    kafka_bootstrap: str
    redis_url: str
    postgres_url: str
    kafka_embedded: bool
    redis_embedded: bool
    postgres_embedded: bool

    @property
    def postgres_sqlalchemy_url(self) -> str:
        """`postgres_url` with the `postgresql+asyncpg://` scheme that SQLAlchemy's async engine needs."""
        return to_sqlalchemy_url(self.postgres_url)

    def __repr__(self) -> str:
        return (
            f"Endpoints(kafka_bootstrap={self.kafka_bootstrap!r}, "
            f"redis_url={redact_url(self.redis_url)!r}, "
            f"postgres_url={redact_url(self.postgres_url)!r}, "
            f"kafka_embedded={self.kafka_embedded}, redis_embedded={self.redis_embedded}, "
            f"postgres_embedded={self.postgres_embedded})"
        )


def to_sqlalchemy_url(url: str) -> str:
    """A `postgresql://` (or `postgres://`, or `postgresql+driver://`) URL in its asyncpg SQLAlchemy form."""
    scheme, sep, rest = url.partition("://")
    if not sep or not scheme.startswith("postgres"):
        raise ValueError(f"expected a postgresql:// URL, got one starting with {scheme!r}")
    return f"{_ASYNCPG_SCHEME}://{rest}"
