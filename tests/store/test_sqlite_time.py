"""The SQLite store's moments: the text SQLAlchemy's ``DateTime`` writes on SQLite, in UTC,
so that SQLAlchemy reads them and comparing the text compares the moments."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import DateTime
from sqlalchemy.dialects import sqlite

from app.store._sqlite_time import moment, stamp

MOMENTS = [
    datetime(2026, 11, 29, 9, 30, 0, 123456, tzinfo=UTC),
    datetime(2026, 1, 1, tzinfo=UTC),  # no microseconds: still six digits
    datetime(2026, 11, 29, 14, 30, 0, 5, tzinfo=timezone(timedelta(hours=5))),
    datetime(999, 12, 31, 23, 59, 59, tzinfo=UTC),  # a three-digit year, padded
]


def _sqlalchemy_text(value: datetime) -> str:
    dialect = sqlite.dialect()
    bind = DateTime().dialect_impl(dialect).bind_processor(dialect)
    assert bind is not None
    text: str = bind(value.astimezone(UTC).replace(tzinfo=None))
    return text


@pytest.mark.parametrize("value", MOMENTS, ids=str)
def test_a_moment_is_stored_as_sqlalchemy_writes_it_in_utc(value: datetime) -> None:
    assert stamp(value) == _sqlalchemy_text(value)
    assert moment(stamp(value)) == value
    assert moment(stamp(value)).tzinfo is UTC  # type: ignore[union-attr]


def test_stored_text_sorts_as_the_moments_do() -> None:
    assert sorted(MOMENTS) == sorted(MOMENTS, key=stamp)


def test_nothing_stored_reads_as_none() -> None:
    assert moment(None) is None
