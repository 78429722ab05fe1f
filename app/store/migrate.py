"""Alembic migrations, run from code on the store's own connection."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine
from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = ["head_revision", "upgrade_async", "upgrade_sync"]

MIGRATIONS = Path(__file__).with_name("migrations")


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def head_revision() -> str | None:
    """The newest migration shipped with this version."""
    return ScriptDirectory.from_config(_config()).get_current_head()


def _upgrade_on(connection: Connection) -> None:
    config = _config()
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


def upgrade_sync(engine: Engine) -> None:
    """Bring the database to the newest migration (synchronous engines)."""
    with engine.begin() as connection:
        _upgrade_on(connection)


async def upgrade_async(engine: AsyncEngine, *, before: str | None = None) -> None:
    """Bring the database to the newest migration (async engines); ``before``, a statement
    run first in the same transaction (a lock that makes concurrent upgrades take turns)."""
    async with engine.begin() as connection:
        if before is not None:
            await connection.exec_driver_sql(before)
        await connection.run_sync(_upgrade_on)
