"""Moments as the SQLite store writes and reads them: text in the format SQLAlchemy's
``DateTime`` uses on SQLite (``2026-01-31 12:00:00.000000``), in UTC."""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["moment", "stamp"]


def stamp(value: datetime) -> str:
    """``value`` as stored text, in UTC; a naive ``value`` is taken as local time."""
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    # isoformat, cut before its "+00:00": a quarter of what strftime costs, and the writer
    # stamps every change it applies.
    return value.isoformat(" ", "microseconds")[:26]


def moment(value: str | None) -> datetime | None:
    """Stored text back as an aware UTC datetime."""
    return None if value is None else datetime.fromisoformat(value).replace(tzinfo=UTC)
