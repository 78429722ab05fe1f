"""Alembic migrations, run from code on the store's own connection."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine

__all__ = ["head_revision", "upgrade_sync"]

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
