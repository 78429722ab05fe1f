"""Small text helpers: durations, percentages, bars, times and errors as ``stepline`` shows them."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from rich.text import Text

from ._console import STYLES, Glyphs

__all__ = [
    "ago",
    "bar",
    "clock",
    "compact_json",
    "elapsed",
    "error_text",
    "iso",
    "parse_time",
    "percent",
    "seconds",
    "status_text",
    "utc",
    "weight",
]


def seconds(value: float | None) -> str:
    """``0.3s``, ``4.1s``, ``1:04.2`` (minutes), ``1:02:03`` (hours); ``-`` when unknown."""
    if value is None:
        return "-"
    value = max(0.0, value)
    if value < 60:
        return f"{value:.1f}s"
    minutes, rest = divmod(value, 60)
    if minutes < 60:
        return f"{int(minutes)}:{rest:04.1f}"
    hours, minutes = divmod(int(minutes), 60)
    return f"{hours}:{minutes:02d}:{int(rest):02d}"


def clock(value: float) -> str:
    """``0:00:31``: elapsed time and estimates, which tick while a run is followed."""
    total = max(0, int(value))
    hours, rest = divmod(total, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


def percent(fraction: float | None) -> str:
    return "-" if fraction is None else f"{fraction * 100:.1f}%"


def weight(fraction: float) -> str:
    """A step's normalised weight as a whole percentage (``20%``)."""
    return f"{fraction * 100:.0f}%"


def bar(fraction: float, width: int, glyphs: Glyphs, style: str = "cyan") -> Text:
    """``━━━━━━━━━╸──────────``: drawn with characters, so it reads without colour."""
    fraction = min(1.0, max(0.0, fraction))
    cells = fraction * width
    done = int(cells)
    head = 1 if done < width and cells - done >= 0.5 else 0
    text = Text(glyphs.bar_done * done + glyphs.bar_head * head, style=style)
    text.append(glyphs.bar_todo * (width - done - head), style="dim")
    return text


def parse_time(value: Any) -> datetime | None:
    """An ISO 8601 time from an event (naive ones are UTC), or ``None``."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return None
    else:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def utc(moment: datetime | None) -> str:
    """``2026-11-29 02:19:56Z`` (times are shown in UTC everywhere)."""
    if moment is None:
        return "-"
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def iso(moment: datetime | None) -> str:
    """``2026-11-29T02:19:56Z``: the stamp of a line of plain output."""
    moment = moment or datetime.now(UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def elapsed(start: datetime | None, end: datetime | None = None) -> float | None:
    """Seconds from ``start`` to ``end`` (now when ``None``); ``None`` without a start."""
    if start is None:
        return None
    return max(0.0, ((end or datetime.now(UTC)) - start).total_seconds())


def ago(moment: datetime | None, now: datetime | None = None) -> str:
    """``42s ago``, ``5m ago``, ``3h ago``, ``2d ago``."""
    if moment is None:
        return "-"
    delta = max(0, int(((now or datetime.now(UTC)) - moment).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if delta >= size:
            return f"{delta // size}{unit} ago"
    return f"{delta}s ago"


def error_text(error: Any) -> str:
    """``Type: message`` from an error document (a model or a dict); empty when none."""
    if error is None:
        return ""
    data = error if isinstance(error, dict) else error.model_dump()
    kind, message = data.get("type"), data.get("message")
    if kind and message:
        return f"{kind}: {message}"
    return str(kind or message or "")


def compact_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))


def status_text(status: str, glyph: str = "") -> Text:
    """``✓ succeeded``, styled by status; the word is always there, the colour is extra."""
    words = status.replace("_", " ")
    return Text(f"{glyph} {words}" if glyph else words, style=STYLES.get(status, ""))
