"""What the store hands out and takes in: plain, immutable values, no ORM objects."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any

from pydantic_core import to_json

from app.states import RunStatus

__all__ = [
    "ApiKeyRow",
    "Change",
    "EventRow",
    "NewApiKey",
    "NewRun",
    "NewStep",
    "RunFilter",
    "RunRow",
    "StepRow",
]


@dataclass(frozen=True, slots=True)
class StepRow:
    """One step of a run, as stored."""

    index: int
    name: str
    weight: float
    can_rollback: bool
    status: str
    progress: float
    attempts: int
    started_at: datetime | None
    finished_at: datetime | None
    duration_seconds: float | None
    error: dict[str, Any] | None
    rollback_status: str
    rollback_started_at: datetime | None
    rollback_finished_at: datetime | None
    rollback_error: dict[str, Any] | None
    result_data: dict[str, Any] | None = None
    rollback_data: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class RunRow:
    """A run with its steps, as stored; ``last_seq`` is the sequence of its latest event."""

    id: str
    pipeline: str
    status: RunStatus
    params: dict[str, Any]
    labels: dict[str, str]
    progress: float
    rollback_progress: float | None
    error: dict[str, Any] | None
    result: dict[str, Any] | None
    summary: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime
    last_seq: int
    cancel_requested: bool
    rollback_on_cancel: bool
    owner: str | None = None
    lease_expires_at: datetime | None = None
    epoch: int = 0
    recovery_attempts: int = 0
    checkpoint: dict[str, Any] | None = None
    owner_key_id: str | None = None
    steps: tuple[StepRow, ...] = ()


@dataclass(frozen=True)
class EventRow:
    """One durable event: ``seq`` within its run, ``id`` across all runs."""

    id: int
    run_id: str
    seq: int
    type: str
    pipeline: str
    created_at: datetime
    data: dict[str, Any]

    @cached_property
    def json(self) -> str:
        """The event as one JSON object, built once however many streams send it."""
        body = {
            "run_id": self.run_id,
            "seq": self.seq,
            "id": self.id,
            "type": self.type,
            "pipeline": self.pipeline,
            "time": self.created_at.isoformat(),
            **self.data,
        }
        return to_json(body, fallback=str).decode()


@dataclass(frozen=True, slots=True)
class NewStep:
    """A step of a run being created."""

    name: str
    weight: float
    can_rollback: bool


@dataclass(frozen=True, slots=True)
class NewRun:
    """A run being created, with the idempotency key and request hash if any, the API key
    that creates it, and the most runs that may be queued (of that key, of the pipeline)
    for it to be accepted."""

    pipeline: str
    params: dict[str, Any]
    labels: dict[str, str]
    steps: tuple[NewStep, ...]
    idempotency_key: str | None = None
    request_hash: str | None = None
    owner_key_id: str | None = None
    max_queued_per_key: int | None = None
    max_queued_per_pipeline: int | None = None


@dataclass(frozen=True, slots=True)
class Change:
    """One transition of a run, written with its event in one transaction.

    ``expect`` guards the write: the run's status must be one of them, or nothing is written
    (compare-and-set). ``moves`` changes the status only from the statuses it lists (a
    failure rolls back a ``running`` run but leaves a ``cancelling`` one cancelling).
    ``run`` and ``steps`` are column updates; the event's data gets the run's status and
    progress after the change.
    """

    event: str
    data: Mapping[str, Any] = field(default_factory=dict)
    expect: frozenset[RunStatus] | None = None
    moves: Mapping[RunStatus, RunStatus] = field(default_factory=dict)
    run: Mapping[str, Any] = field(default_factory=dict)
    steps: Mapping[int, Mapping[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RunFilter:
    """Filters of ``GET /runs``."""

    pipeline: str | None = None
    status: RunStatus | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    created_after: datetime | None = None
    created_before: datetime | None = None
    owner_key_id: str | None = None
    """Only the runs this API key created (None: every run)."""


@dataclass(frozen=True, slots=True)
class NewApiKey:
    """An API key being created: its public id, name, scopes and the hash of its secret
    (the secret itself is never stored)."""

    id: str
    name: str
    scopes: tuple[str, ...]
    secret_hash: str


@dataclass(frozen=True, slots=True)
class ApiKeyRow:
    """An API key as stored; ``revoked_at`` is set once it has been revoked."""

    id: str
    name: str
    scopes: tuple[str, ...]
    secret_hash: str
    created_at: datetime
    revoked_at: datetime | None = None
