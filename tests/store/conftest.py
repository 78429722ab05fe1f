"""The store under test, on each backend: a SQLite file, or a PostgreSQL database of its own."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from app.store import open_store
from app.store.base import Store
from tests.databases import BACKENDS, database_url


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty database of the backend under test."""
    with database_url(request.param, tmp_path) as created:
        yield created


@pytest.fixture
def postgres_url(tmp_path: Path) -> Iterator[str]:
    """The URL of an empty PostgreSQL database, for what only PostgreSQL has."""
    with database_url("postgres", tmp_path) as created:
        yield created


@pytest.fixture
async def store(url: str) -> AsyncIterator[Store]:
    """A started store on ``url``, closed after the test."""
    opened = open_store(url)
    await opened.start()
    try:
        yield opened
    finally:
        await opened.close()
