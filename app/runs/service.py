"""The run service: what the API asks for, in terms of the store, the bus and the workers."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import to_json

from app.errors import InvalidParams, InvalidTransition, PipelineNotFound, Unavailable
from app.pipelines.catalog import Pipeline
from app.runs.bus import EventBus
from app.runs.executor import Executor
from app.states import TERMINAL, RunStatus
from app.store.base import Store
from app.store.records import Change, EventRow, NewRun, NewStep, RunFilter, RunRow

__all__ = ["RunService", "request_hash"]

STEP_CACHE_SIZE = 1024


def request_hash(pipeline: str, params: Mapping[str, Any], labels: Mapping[str, str]) -> str:
    """A stable digest of a run request, to tell a repeat from another request."""
    canonical = json.dumps(
        {"pipeline": pipeline, "params": params, "labels": labels},
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


class RunService:
    """Creates, reads and cancels runs; the routes call this and nothing else."""

    def __init__(
        self, store: Store, bus: EventBus, workers: Executor, pipelines: dict[str, Pipeline]
    ) -> None:
        self.store, self.bus, self.workers, self.pipelines = store, bus, workers, pipelines
        self._step_cache: dict[tuple[str, bytes], tuple[NewStep, ...]] = {}
        self.accepting = True

    def pipeline(self, name: str) -> Pipeline:
        try:
            return self.pipelines[name]
        except KeyError:
            raise PipelineNotFound(f"no pipeline named {name!r}") from None

    async def create(
        self,
        pipeline_name: str,
        params: Mapping[str, Any],
        labels: Mapping[str, str],
        idempotency_key: str | None = None,
    ) -> tuple[RunRow, bool]:
        """Validate and queue a run; return it and whether it was created now (not a repeat)."""
        if not self.accepting:
            raise Unavailable("the service is shutting down and takes no new runs; retry shortly")
        pipeline = self.pipeline(pipeline_name)
        try:
            model = pipeline.params_model.model_validate(dict(params))
        except ValidationError as exc:
            raise InvalidParams(
                f"the params of pipeline {pipeline_name!r} are not valid",
                errors=[
                    {"loc": ["params", *map(str, e["loc"])], "msg": e["msg"], "type": e["type"]}
                    for e in exc.errors()
                ],
            ) from exc
        stored_params = model.model_dump(mode="json")
        steps = self._steps(pipeline, model, stored_params)
        new = NewRun(
            pipeline=pipeline.name,
            params=stored_params,
            labels=dict(labels),
            steps=steps,
            idempotency_key=idempotency_key,
            request_hash=request_hash(pipeline.name, params, labels) if idempotency_key else None,
        )
        run, event = await self.store.create_run(new)
        if event is None:
            return run, False
        self.bus.publish(event)
        self.workers.wake()
        return run, True

    def _steps(
        self, pipeline: Pipeline, model: BaseModel, params: dict[str, Any]
    ) -> tuple[NewStep, ...]:
        # Building a pipeline's registry costs more than the rest of a request, and its
        # steps depend on nothing but the params: remember them per params.
        # Keys of params in another order only miss the cache; they still get right steps.
        key = (pipeline.name, to_json(params, fallback=str))
        steps = self._step_cache.get(key)
        if steps is None:
            steps = tuple(
                NewStep(s.name, s.weight, s.can_rollback) for s in pipeline.steps_for(model)
            )
            if len(self._step_cache) >= STEP_CACHE_SIZE:
                self._step_cache.pop(next(iter(self._step_cache)))
            self._step_cache[key] = steps
        return steps

    async def get(self, run_id: str) -> RunRow:
        return await self.store.get_run(run_id)

    async def find(self, filters: RunFilter, cursor: str | None, limit: int) -> list[RunRow]:
        return await self.store.list_runs(filters, cursor, limit)

    async def cancel(self, run_id: str, rollback: bool) -> RunRow:
        """Cancel a queued run at once, or ask a running one to stop (then roll back)."""
        run = await self.store.get_run(run_id)
        if run.status is RunStatus.queued:
            try:
                await self._apply(
                    run_id,
                    Change(
                        "run.cancelled",
                        {"summary": "cancelled before it started"},
                        expect=frozenset({RunStatus.queued}),
                        run={"status": RunStatus.cancelled, "cancel_requested": True,
                             "summary": "cancelled before it started",
                             "finished_at": _now()},
                    ),
                )  # fmt: skip
                return await self.store.get_run(run_id)
            except InvalidTransition:
                run = await self.store.get_run(run_id)  # a worker took it meanwhile
        if run.status in TERMINAL:
            raise InvalidTransition(f"run {run_id} has already {run.status.value}",
                                    run_status=run.status.value)  # fmt: skip
        if run.status is not RunStatus.running:
            raise InvalidTransition(
                f"run {run_id} is {run.status.value} and cannot be cancelled now",
                run_status=run.status.value,
            )
        await self._apply(
            run_id,
            Change(
                "run.cancelling",
                {"rollback": rollback},
                expect=frozenset({RunStatus.running}),
                run={"status": RunStatus.cancelling, "cancel_requested": True,
                     "rollback_on_cancel": rollback},
            ),
        )  # fmt: skip
        self.workers.cancel(run_id, rollback)
        return await self.store.get_run(run_id)

    async def _apply(self, run_id: str, change: Change) -> EventRow:
        event = await self.store.apply(run_id, change)
        self.bus.publish(event)
        return event

    async def logs(self, run_id: str, step: str | None, after: int, limit: int) -> list[EventRow]:
        await self.store.get_run(run_id)  # 404 for an unknown run
        return await self.store.run_logs(run_id, step, after, limit)


def _now() -> datetime:
    return datetime.now(UTC)
