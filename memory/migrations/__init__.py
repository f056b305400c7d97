"""Alembic migrations of the CryptIQ tables, shipped in the package and run from code.

`await upgrade(url)` brings a database to the newest revision. `cryptiq infra up` and every
agent at start call it; a transaction-scoped advisory lock makes concurrent callers take turns,
and a database already at head is left untouched, so calling it again is harmless.

New revision (developers): `alembic -c memory/migrations/alembic.ini revision -m "what"`.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text

from memory.database import create_engine, translate_errors

HERE = Path(__file__).parent
# Any fixed 64-bit number, the same in every process: "CRYPTIQ" in ASCII.
_LOCK_KEY = 0x43525950544951


def alembic_config() -> Config:
    """An Alembic config pointing at the migrations inside this package (no alembic.ini needed)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    return cfg


def head_revision() -> str:
    """The newest revision the code knows."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


async def upgrade(url: str) -> None:
    """Migrate the database at `url` to head, taking turns with concurrent callers."""
    engine = create_engine(url)
    try:
        with translate_errors("while migrating"):
            async with engine.connect() as conn:
                await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
                await conn.run_sync(_upgrade_on)
                await conn.commit()
    finally:
        await engine.dispose()


async def current_revision(url: str) -> str | None:
    """The revision the database at `url` is at (None before the first migration)."""
    engine = create_engine(url)
    try:
        with translate_errors():
            async with engine.connect() as conn:
                return await conn.run_sync(
                    lambda sync: MigrationContext.configure(sync).get_current_revision()
                )
    finally:
        await engine.dispose()


def _upgrade_on(connection: Connection) -> None:
    cfg = alembic_config()
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, "head")
