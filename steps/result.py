"""The outcome of one step's ``execute``."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

__all__ = ["StepResult"]


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class StepResult:
    """What a step returns: success or failure, data for later steps, and data for its rollback.

    A bare ``StepResult()`` means success. ``timestamp`` is the moment the result was built
    (timezone-aware UTC). ``rollback_data`` is never read by the orchestrator: it reaches the
    step's own ``rollback`` because the whole result is passed back to it.
    """

    success: bool = True
    data: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    rollback_data: dict[str, Any] = field(default_factory=dict)
    skipped: bool = False
    timestamp: datetime = field(default_factory=_utc_now)
