"""Turning stored rows into public bodies and SSE payloads."""

from __future__ import annotations

import json
from typing import Any

from app.api.schemas import (
    ErrorPublic,
    LogLinePublic,
    PipelinePublic,
    PipelineStepPublic,
    RetryPublic,
    RollbackPublic,
    RunPublic,
    StepRunPublic,
)
from app.pipelines.catalog import Pipeline
from app.states import RollbackStatus, StepStatus
from app.store.records import EventRow, RunRow, StepRow

__all__ = ["event_json", "log_line", "pipeline_public", "run_public"]


def _error(document: dict[str, Any] | None) -> ErrorPublic | None:
    return None if document is None else ErrorPublic(**document)


def _step(step: StepRow) -> StepRunPublic:
    return StepRunPublic(
        index=step.index,
        name=step.name,
        weight=step.weight,
        can_rollback=step.can_rollback,
        status=StepStatus(step.status),
        progress=step.progress,
        attempts=step.attempts,
        started_at=step.started_at,
        finished_at=step.finished_at,
        duration_seconds=step.duration_seconds,
        error=_error(step.error),
        rollback=RollbackPublic(
            status=RollbackStatus(step.rollback_status),
            started_at=step.rollback_started_at,
            finished_at=step.rollback_finished_at,
            error=_error(step.rollback_error),
        ),
    )


def run_public(run: RunRow) -> RunPublic:
    return RunPublic(
        id=run.id,
        pipeline=run.pipeline,
        status=run.status,
        progress=run.progress,
        rollback_progress=run.rollback_progress,
        params=run.params,
        labels=run.labels,
        created_at=run.created_at,
        started_at=run.started_at,
        finished_at=run.finished_at,
        updated_at=run.updated_at,
        error=_error(run.error),
        result=run.result,
        summary=run.summary,
        cancel_requested=run.cancel_requested,
        last_event_id=run.last_seq,
        steps=[_step(s) for s in run.steps],
    )


def pipeline_public(pipeline: Pipeline) -> PipelinePublic:
    return PipelinePublic(
        name=pipeline.name,
        title=pipeline.title,
        description=pipeline.description,
        params_schema=pipeline.params_schema(),
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


def event_json(event: EventRow) -> str:
    """The ``data:`` of an SSE event: the event's own fields plus who and when."""
    body = {
        "run_id": event.run_id,
        "seq": event.seq,
        "id": event.id,
        "type": event.type,
        "pipeline": event.pipeline,
        "time": event.created_at.isoformat(),
        **event.data,
    }
    return json.dumps(body, default=str, separators=(",", ":"))


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
