"""The run service: what the API asks for, in terms of the store, the bus and the workers."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import to_json

from app.errors import (
    InvalidParams,
    InvalidTransition,
    PayloadTooLarge,
    PipelineNotFound,
    RunNotFound,
    Unavailable,
)
from app.pipelines.catalog import Pipeline
from app.runs.bus import EventBus
from app.runs.executor import Executor
from app.states import TERMINAL, RunStatus
from app.store.base import Store
from app.store.records import Change, EventRow, NewRun, NewStep, RunFilter, RunRow

__all__ = ["RunService", "request_hash"]

STEP_CACHE_SIZE = 1024
OWNER_CACHE_SIZE = 65_536  # runs whose creating key is remembered, for filtering live events


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
        self,
        store: Store,
        bus: EventBus,
        workers: Executor,
        pipelines: dict[str, Pipeline],
        *,
        max_params_bytes: int | None = None,
        max_queued_per_key: int | None = None,
        max_queued_per_pipeline: int | None = None,
    ) -> None:
        self.store, self.bus, self.workers, self.pipelines = store, bus, workers, pipelines
        self.max_params_bytes = max_params_bytes
        self.max_queued_per_key = max_queued_per_key
        self.max_queued_per_pipeline = max_queued_per_pipeline
        self._step_cache: dict[tuple[str, bytes], tuple[NewStep, ...]] = {}
        self._owners: dict[str, str | None] = {}
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
        owner_key_id: str | None = None,
    ) -> tuple[RunRow, bool]:
        """Validate and queue a run for the API key ``owner_key_id`` (None when
        authentication is off); return it and whether it was created now (not a repeat)."""
        if not self.accepting:
            raise Unavailable("the service is shutting down and takes no new runs; retry shortly")
        pipeline = self.pipeline(pipeline_name)
        if self.max_params_bytes is not None:
            size = len(to_json(params, fallback=str))
            if size > self.max_params_bytes:
                raise PayloadTooLarge(
                    f"params take {size} bytes as JSON, more than {self.max_params_bytes}"
                )
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
            idempotency_key=_scoped(idempotency_key, owner_key_id),
            request_hash=request_hash(pipeline.name, params, labels) if idempotency_key else None,
            owner_key_id=owner_key_id,
            max_queued_per_key=self.max_queued_per_key,
            max_queued_per_pipeline=self.max_queued_per_pipeline,
        )
        run, event = await self.store.create_run(new)
        self._remember_owner(run.id, run.owner_key_id)
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

    async def get(self, run_id: str, owner: str | None = None) -> RunRow:
        """The run; with ``owner``, only if that key created it. Another key's run is not
        found, exactly as a run that does not exist."""
        run = await self.store.get_run(run_id)
        if owner is not None and run.owner_key_id != owner:
            raise RunNotFound(f"no run with id {run_id!r}")
        return run

    async def owner_of(self, run_id: str) -> str | None:
        """The key that created the run (None for none, or for a run that does not exist)."""
        try:
            return self._owners[run_id]
        except KeyError:
            pass
        try:
            owner = (await self.store.get_run(run_id)).owner_key_id
        except RunNotFound:
            return None
        self._remember_owner(run_id, owner)
        return owner

    def _remember_owner(self, run_id: str, owner: str | None) -> None:
        if len(self._owners) >= OWNER_CACHE_SIZE:
            self._owners.pop(next(iter(self._owners)))
        self._owners[run_id] = owner

    async def find(self, filters: RunFilter, cursor: str | None, limit: int) -> list[RunRow]:
        return await self.store.list_runs(filters, cursor, limit)

    async def cancel(self, run_id: str, rollback: bool, owner: str | None = None) -> RunRow:
        """Cancel a queued run at once, or ask a running one to stop (then roll back)."""
        run = await self.get(run_id, owner)
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

    async def logs(
        self, run_id: str, step: str | None, after: int, limit: int, owner: str | None = None
    ) -> list[EventRow]:
        await self.get(run_id, owner)  # 404 for an unknown run, or another key's
        return await self.store.run_logs(run_id, step, after, limit)


def _now() -> datetime:
    return datetime.now(UTC)


def _scoped(idempotency_key: str | None, owner_key_id: str | None) -> str | None:
    # Each API key has idempotency keys of its own: another key's repeat must neither get
    # this key's run nor learn that the key was used. Hashed, to fit the column.
    if idempotency_key is None or owner_key_id is None:
        return idempotency_key
    return f"{owner_key_id}:{hashlib.sha256(idempotency_key.encode()).hexdigest()}"
