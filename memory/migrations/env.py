"""Alembic's environment: always run on a connection handed over by `memory.migrations.upgrade`."""

from __future__ import annotations

from alembic import context

from memory.models import all_tables

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "run migrations through `cryptiq infra up` or memory.migrations.upgrade(url), "
        "which hand Alembic a connection"
    )
context.configure(connection=connection, target_metadata=all_tables(), compare_type=True)
with context.begin_transaction():
    context.run_migrations()
