"""What the API returns, as pydantic models that keep fields a newer server adds."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "TERMINAL_EVENTS",
    "TERMINAL_STATUSES",
    "ErrorInfo",
    "Event",
    "LogLine",
    "LogPage",
    "Pipeline",
    "PipelineStep",
    "Problem",
    "Rollback",
    "Run",
    "RunPage",
    "Step",
    "StreamToken",
]

TERMINAL_EVENTS = frozenset({"run.succeeded", "run.failed", "run.cancelled"})
TERMINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled"})


class _Model(BaseModel):
    # A server newer than this client may add fields: they are kept, not refused.
    model_config = ConfigDict(extra="allow")


class ErrorInfo(_Model):
    type: str | None = None
    message: str | None = None
    step: str | None = None
    traceback: str | None = None


class Rollback(_Model):
    status: str
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error: ErrorInfo | None = None


class Step(_Model):
    index: int
    name: str
    weight: float
    can_rollback: bool
    status: str
    progress: float
    attempts: int
    started_at: datetime | None = None
    finished_at: datetime | None = None
    duration_seconds: float | None = None
    error: ErrorInfo | None = None
    rollback: Rollback


class Run(_Model):
    id: str
    pipeline: str
    status: str
    progress: float
    rollback_progress: float | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    updated_at: datetime
    error: ErrorInfo | None = None
    result: dict[str, Any] | None = None
    summary: str | None = None
    cancel_requested: bool = False
    last_event_id: int = 0
    steps: list[Step] = Field(default_factory=list)

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL_STATUSES


class RunPage(_Model):
    items: list[Run]
    next_cursor: str | None = None


class PipelineStep(_Model):
    name: str
    weight: float
    can_rollback: bool
    irreversible: bool = False
    timeout_seconds: float | None = None
    retry: dict[str, Any] | None = None


class Pipeline(_Model):
    name: str
    title: str = ""
    description: str = ""
    steps: list[PipelineStep] = Field(default_factory=list)
    params_schema: dict[str, Any] = Field(default_factory=dict)
    recovery: str | None = None
    resources: dict[str, Any] | None = None
    max_concurrency: int | None = None


class LogLine(_Model):
    seq: int
    time: datetime
    step: str | None = None
    level: str
    event: str
    data: dict[str, Any] = Field(default_factory=dict)


class LogPage(_Model):
    items: list[LogLine]
    next_after: int | None = None


class StreamToken(_Model):
    token: str
    expires_at: datetime
    url: str


class Problem(_Model):
    """RFC 9457 problem details."""

    type: str = "about:blank"
    title: str = ""
    status: int | None = None
    detail: str | None = None
    instance: str | None = None
    errors: list[dict[str, Any]] | None = None


class Event(_Model):
    """One server-sent event: ``type`` is its ``event:`` name, ``id`` its ``id:`` (``None``
    for notices such as ``stream.closing``), ``data`` its JSON payload (for ``run.snapshot``,
    the run)."""

    type: str
    id: str | None = None
    data: Any = None

    @property
    def seq(self) -> int | None:
        """The id as a number, where it is one (every stored event's is)."""
        return int(self.id) if self.id is not None and self.id.isdigit() else None

    @property
    def terminal(self) -> bool:
        return self.type in TERMINAL_EVENTS
