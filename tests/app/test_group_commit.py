"""The SQLite writer commits concurrent jobs together, and a failing job is undone alone."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from app.store.writer import GroupCommitWriter

pytestmark = pytest.mark.anyio

WAIT_S = 10.0


@pytest.fixture
async def writer(tmp_path: Path) -> AsyncIterator[GroupCommitWriter]:
    path = str(tmp_path / "w.db")
    with sqlite3.connect(path) as setup:
        setup.execute("CREATE TABLE items (name TEXT PRIMARY KEY)")
    writer = GroupCommitWriter(path)
    writer.start()
    yield writer
    writer.stop()


def rows(writer: GroupCommitWriter) -> list[str]:
    with sqlite3.connect(writer.path) as conn:
        return [r[0] for r in conn.execute("SELECT name FROM items ORDER BY name")]


def insert(name: str, fail: bool = False) -> Callable[[sqlite3.Connection], str]:
    def job(conn: sqlite3.Connection) -> str:
        conn.execute("INSERT INTO items VALUES (?)", (name,))
        if fail:
            raise ValueError(f"{name} fails after writing")
        return name

    return job


async def hold_writer(writer: GroupCommitWriter) -> tuple[threading.Event, asyncio.Future[None]]:
    """Occupy the writer thread until the returned event is set, so that the jobs submitted
    meanwhile form the next batch together."""
    busy, release = threading.Event(), threading.Event()

    def block(conn: sqlite3.Connection) -> None:
        busy.set()
        release.wait(WAIT_S)

    blocked = asyncio.ensure_future(writer.submit(block))
    assert await asyncio.to_thread(busy.wait, WAIT_S)
    return release, blocked


async def test_a_failing_job_is_undone_alone_and_its_batch_commits(
    writer: GroupCommitWriter,
) -> None:
    release, blocked = await hold_writer(writer)
    jobs = [writer.enqueue(insert("a")), writer.enqueue(insert("b", fail=True)),
            writer.enqueue(insert("c"))]  # fmt: skip
    release.set()
    await asyncio.wait_for(blocked, WAIT_S)
    results = await asyncio.wait_for(asyncio.gather(*jobs, return_exceptions=True), WAIT_S)

    assert results[0] == "a"
    assert isinstance(results[1], ValueError)
    assert results[2] == "c"
    assert rows(writer) == ["a", "c"]
    assert (writer.batches, writer.jobs) == (2, 4)  # the three jobs shared one transaction


async def test_a_lone_failing_job_leaves_nothing_behind(writer: GroupCommitWriter) -> None:
    with pytest.raises(ValueError, match="fails after writing"):
        await asyncio.wait_for(writer.submit(insert("x", fail=True)), WAIT_S)
    assert await asyncio.wait_for(writer.submit(insert("y")), WAIT_S) == "y"
    assert rows(writer) == ["y"]


async def test_a_batch_that_cannot_commit_fails_every_job(writer: GroupCommitWriter) -> None:
    await writer.submit(insert("taken"))
    release, blocked = await hold_writer(writer)
    # Both collide with the row already there: each job fails, nothing new is written.
    jobs = [writer.enqueue(insert("taken")) for _ in range(2)]
    release.set()
    await asyncio.wait_for(blocked, WAIT_S)
    results = await asyncio.wait_for(asyncio.gather(*jobs, return_exceptions=True), WAIT_S)
    assert all(isinstance(r, sqlite3.IntegrityError) for r in results)
    assert rows(writer) == ["taken"]
