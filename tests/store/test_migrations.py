"""The migrations build exactly the tables ``app.store.schema`` declares, on every backend."""

from __future__ import annotations

from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from app.store import open_store
from app.store.schema import metadata

pytestmark = pytest.mark.anyio


def _differences(connection: Connection) -> list[Any]:
    return list(compare_metadata(MigrationContext.configure(connection), metadata))


async def test_the_migrated_schema_is_the_declared_one(url: str) -> None:
    store = open_store(url)
    await store.start()  # migrates to the newest revision
    await store.close()

    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            differences = await connection.run_sync(_differences)
    finally:
        await engine.dispose()

    assert differences == []
