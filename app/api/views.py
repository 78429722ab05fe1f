"""Turning stored rows into public bodies and SSE payloads."""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any

from pydantic_core import to_json

from app.api.schemas import (
    LogLinePublic,
    PipelinePublic,
    PipelineStepPublic,
    ResourcesPublic,
    RetryPublic,
    RunPublic,
)
from app.pipelines.catalog import Pipeline
from app.states import RollbackStatus, RunStatus, StepStatus
from app.store.records import EventRow, RunRow, StepRow

__all__ = ["log_line", "pipeline_public", "run_document", "run_json", "run_public"]

_PENDING = StepStatus.pending.value
_NOT_NEEDED = RollbackStatus.not_needed.value


def _time(value: datetime | None) -> str | None:
    # As pydantic writes a UTC datetime, so both paths give the same text.
    return None if value is None else value.isoformat().replace("+00:00", "Z")


def _error(document: dict[str, Any] | None) -> dict[str, Any] | None:
    if document is None:
        return None
    return {key: document.get(key) for key in ("type", "message", "step", "traceback")}


def _step(step: StepRow) -> dict[str, Any]:
    if (
        step.status == _PENDING
        and step.rollback_status == _NOT_NEEDED
        and step.attempts == 0
        and step.progress == 0.0
        and step.started_at is None
        and step.finished_at is None
        and step.duration_seconds is None
        and step.error is None
        and step.rollback_started_at is None
        and step.rollback_finished_at is None
        and step.rollback_error is None
    ):
        # Every step of a new run looks like this: its document depends on four fields.
        # The cached document is shared: nothing may change it, only serialise it.
        return _pending_step(step.index, step.name, step.weight, step.can_rollback)
    return _step_document(step)


@functools.lru_cache(maxsize=4096)
def _pending_step(index: int, name: str, weight: float, can_rollback: bool) -> dict[str, Any]:
    return _step_document(
        StepRow(index, name, weight, can_rollback, _PENDING, 0.0, 0, None, None, None, None,
                _NOT_NEEDED, None, None, None)
    )  # fmt: skip


def _step_document(step: StepRow) -> dict[str, Any]:
    return {
        "index": step.index,
        "name": step.name,
        "weight": step.weight,
        "can_rollback": step.can_rollback,
        "status": step.status,
        "progress": step.progress,
        "attempts": step.attempts,
        "started_at": _time(step.started_at),
        "finished_at": _time(step.finished_at),
        "duration_seconds": step.duration_seconds,
        "error": _error(step.error),
        "rollback": {
            "status": step.rollback_status,
            "started_at": _time(step.rollback_started_at),
            "finished_at": _time(step.rollback_finished_at),
            "error": _error(step.rollback_error),
        },
    }


def run_document(run: RunRow) -> dict[str, Any]:
    """The body of ``GET /runs/{id}`` as plain JSON values (the ``RunPublic`` schema).

    Built by hand because it is on the hot paths (every ``POST /runs`` answers with it and
    every stream starts with it); a test checks it against ``RunPublic``.
    """
    return {**_run_fields(run), "steps": [_step(s) for s in run.steps]}


def _run_fields(run: RunRow) -> dict[str, Any]:
    return {
        "id": run.id,
        "pipeline": run.pipeline,
        "status": run.status.value,
        "progress": run.progress,
        "rollback_progress": run.rollback_progress,
        "params": run.params,
        "labels": run.labels,
        "created_at": _time(run.created_at),
        "started_at": _time(run.started_at),
        "finished_at": _time(run.finished_at),
        "updated_at": _time(run.updated_at),
        "error": _error(run.error),
        "result": run.result,
        "summary": run.summary,
        "cancel_requested": run.cancel_requested,
        "last_event_id": run.last_seq,
    }


def run_json(run: RunRow) -> bytes:
    """``run_document`` as JSON."""
    head = to_json(_run_fields(run), fallback=str)
    if run.status is RunStatus.queued:
        steps = _queued_steps_json(run.steps)
    else:
        steps = to_json([_step(s) for s in run.steps], fallback=str)
    return b"".join((head[:-1], b',"steps":', steps, b"}"))


# Steps tuples are immutable, and the store shares one among the queued runs of a plan (as
# every POST /runs answers one): the JSON of a shared tuple is written once. Keyed by
# identity; each entry keeps its tuple alive, so no other can take its id while cached.
_STEPS_JSON: dict[int, tuple[tuple[StepRow, ...], bytes]] = {}
_STEPS_JSON_SIZE = 256


def _queued_steps_json(steps: tuple[StepRow, ...]) -> bytes:
    cached = _STEPS_JSON.get(id(steps))
    if cached is not None and cached[0] is steps:
        return cached[1]
    text = to_json([_step(s) for s in steps], fallback=str)
    if len(_STEPS_JSON) >= _STEPS_JSON_SIZE:
        _STEPS_JSON.pop(next(iter(_STEPS_JSON)))
    _STEPS_JSON[id(steps)] = (steps, text)
    return text


def run_public(run: RunRow) -> RunPublic:
    return RunPublic.model_validate(run_document(run))


def pipeline_public(pipeline: Pipeline) -> PipelinePublic:
    return PipelinePublic(
        name=pipeline.name,
        title=pipeline.title,
        description=pipeline.description,
        params_schema=pipeline.params_schema(),
        recovery=pipeline.recovery.value,
        resources=ResourcesPublic(
            num_cpus=pipeline.resources.num_cpus,
            num_gpus=pipeline.resources.num_gpus,
            memory=pipeline.resources.memory,
            resources=dict(pipeline.resources.resources),
        ),
        max_concurrency=pipeline.max_concurrency,
        steps=[
            PipelineStepPublic(
                name=s.name,
                weight=s.weight,
                can_rollback=s.can_rollback,
                irreversible=s.irreversible,
                timeout_seconds=s.timeout,
                retry=None
                if s.retry is None
                else RetryPublic(
                    max_attempts=s.retry.max_attempts,
                    initial_delay=s.retry.initial_delay,
                    multiplier=s.retry.multiplier,
                    max_delay=s.retry.max_delay,
                    jitter=s.retry.jitter,
                    retry_on=[t.__name__ for t in s.retry.retry_on],
                ),
            )
            for s in pipeline.default_steps()
        ],
    )


def log_line(event: EventRow) -> LogLinePublic:
    data = event.data
    return LogLinePublic(
        seq=event.seq,
        time=event.created_at,
        step=data.get("step"),
        level=str(data.get("level", "info")),
        event=str(data.get("event", "")),
        data=dict(data.get("data") or {}),
    )
