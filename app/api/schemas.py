"""Request and response bodies (``*Create`` in, ``*Public`` out)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.states import RollbackStatus, RunStatus, StepStatus

__all__ = [
    "CancelRequest",
    "ErrorPublic",
    "LogLinePublic",
    "LogsPublic",
    "PipelinePublic",
    "PipelineStepPublic",
    "PipelinesPublic",
    "Problem",
    "RetryPublic",
    "RollbackPublic",
    "RunCreate",
    "RunPublic",
    "RunsPublic",
    "StepRunPublic",
    "StreamTokenPublic",
]

MAX_LABELS = 50
LABEL_LENGTH = 200


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RunCreate(_Input):
    """Start a run of ``pipeline`` with ``params``; ``labels`` are yours to filter by."""

    pipeline: str = Field(min_length=1, max_length=200, examples=["train"])
    params: dict[str, Any] = Field(default_factory=dict, examples=[{"step_seconds": 1}])
    labels: dict[str, str] = Field(
        default_factory=dict, max_length=MAX_LABELS, examples=[{"team": "vision"}]
    )


class CancelRequest(_Input):
    """Cancel a run; ``rollback: false`` leaves completed steps in place."""

    rollback: bool = True


class ErrorPublic(BaseModel):
    """What went wrong: the exception type and message, and the traceback where it helps."""

    type: str | None = None
    message: str | None = None
    step: str | None = None
    traceback: str | None = None


class RollbackPublic(BaseModel):
    """The rollback of one step."""

    status: RollbackStatus
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error: ErrorPublic | None = None


class StepRunPublic(BaseModel):
    """One step of a run: how it ran and how it was undone."""

    index: int
    name: str
    weight: float = Field(description="Share of the run's progress (weights sum to 1).")
    can_rollback: bool
    status: StepStatus
    progress: float
    attempts: int
    started_at: datetime | None = None
    finished_at: datetime | None = None
    duration_seconds: float | None = None
    error: ErrorPublic | None = None
    rollback: RollbackPublic


class RunPublic(BaseModel):
    """A run with its overall weighted progress and every step."""

    id: str
    pipeline: str
    status: RunStatus
    progress: float = Field(description="Overall weighted progress, 0 to 1.")
    rollback_progress: float | None = Field(
        None, description="Share of the rollback done, once a rollback started."
    )
    params: dict[str, Any]
    labels: dict[str, str]
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    updated_at: datetime
    error: ErrorPublic | None = None
    result: dict[str, Any] | None = None
    summary: str | None = Field(
        None, description="One sentence: what happened and what was undone."
    )
    cancel_requested: bool
    last_event_id: int = Field(description="Sequence number of the latest event of this run.")
    steps: list[StepRunPublic]


class RunsPublic(BaseModel):
    """A page of runs, newest first; pass ``next_cursor`` as ``cursor`` for the next page."""

    items: list[RunPublic]
    next_cursor: str | None = None


class RetryPublic(BaseModel):
    max_attempts: int
    initial_delay: float
    multiplier: float
    max_delay: float
    jitter: float
    retry_on: list[str]


class PipelineStepPublic(BaseModel):
    name: str
    weight: float
    can_rollback: bool
    irreversible: bool
    timeout_seconds: float | None = None
    retry: RetryPublic | None = None


class ResourcesPublic(BaseModel):
    """What one run of the pipeline asks of the machine that executes it (on Ray, the
    task's resource request); null where the pipeline declares nothing."""

    num_cpus: float | None = None
    num_gpus: float | None = None
    memory: int | None = Field(None, description="Bytes of memory.")
    resources: dict[str, float] = Field(
        default_factory=dict, description="Custom cluster resources, by name."
    )


class PipelinePublic(BaseModel):
    """A pipeline: its steps in order and the JSON Schema of its params."""

    name: str
    title: str
    description: str
    steps: list[PipelineStepPublic]
    params_schema: dict[str, Any]
    recovery: Literal["rollback", "resume"] = Field(
        description="How a run interrupted by a crash is finished."
    )
    resources: ResourcesPublic
    max_concurrency: int | None = Field(
        None,
        description="At most this many runs of the pipeline execute at once, across every "
        "worker and replica; the others wait in the queue. None: no cap.",
    )


class PipelinesPublic(BaseModel):
    items: list[PipelinePublic]


class LogLinePublic(BaseModel):
    """One line a step wrote through its context."""

    seq: int
    time: datetime
    step: str | None
    level: str
    event: str
    data: dict[str, Any]


class LogsPublic(BaseModel):
    """A page of log lines; pass ``next_after`` as ``after`` for the next page."""

    items: list[LogLinePublic]
    next_after: int | None = None


class StreamTokenPublic(BaseModel):
    """A token that opens one event stream once, as ``?token=``: for a browser's
    ``EventSource``, which cannot send an ``Authorization`` header."""

    token: str
    expires_at: datetime
    url: str = Field(description="The stream's path with the token: give it to EventSource.")


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    errors: list[dict[str, Any]] | None = None
