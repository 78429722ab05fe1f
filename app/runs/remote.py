"""One run on a Ray worker: the body of the task the Ray executor submits for each run.

The task is given everything it needs (``WorkerSettings``, the run's id, the epoch it was
claimed under and the owner that claimed it): nothing is read from the worker machine's
environment, which only needs Stepline and the pipelines' packages installed. It opens the
PostgreSQL store itself, loads the pipelines as the API replica did, and executes or
recovers the run with a ``RunExecution``, so every state change, event and checkpoint is
written by the worker, fenced by the run's epoch.

While the run executes, a watch on the store

- renews the run's lease (``lease_seconds / 3``), so that the run stays owned for as long
  as this process works on it, whatever became of the replica that dispatched it;
- polls for a cancel (``CANCEL_POLL_SECONDS``): a cancel is written to the store by
  whichever replica received it, and reaches the run here;
- stops the run, writing nothing more, once another owner has it (a newer epoch).

A Ray worker process executes one task at a time and many in its life. It keeps one event
loop, a connection pool per database and the pipelines it loaded, so that a run pays neither
for a migration check nor for imports again.

The events are written to the database only (the worker's bus has no subscriber): API
replicas serve them from the event log, which is where a stream replays from.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from dataclasses import dataclass
from typing import Any

from app.pipelines.catalog import Pipeline
from app.pipelines.loading import load_pipelines
from app.runs.bus import EventBus
from app.runs.execution import RunExecution
from app.settings import Settings
from app.states import TERMINAL
from app.store.postgres import PostgresStore

__all__ = ["CANCEL_POLL_SECONDS", "WorkerSettings", "execute_run"]

log = logging.getLogger("stepline.ray")

CANCEL_POLL_SECONDS = 0.5
HEARTBEATS_PER_LEASE = 3


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    """The settings a Ray worker needs to execute runs, sent with each task."""

    database_url: str
    pipelines: tuple[str, ...]
    demo_pipelines: bool
    entry_points: bool
    lease_seconds: float
    progress_interval: float
    max_recovery_attempts: int

    @classmethod
    def of(cls, settings: Settings) -> WorkerSettings:
        return cls(
            database_url=settings.database_url,
            pipelines=tuple(settings.pipelines),
            demo_pipelines=settings.demo_pipelines,
            entry_points=settings.entry_points,
            lease_seconds=settings.lease_seconds,
            progress_interval=1 / settings.progress_per_second,
            max_recovery_attempts=settings.max_recovery_attempts,
        )


class _WorkerProcess:
    """What a Ray worker process keeps from one run to the next."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.stores: dict[str, PostgresStore] = {}
        self.catalogs: dict[tuple[tuple[str, ...], bool, bool], dict[str, Pipeline]] = {}

    async def store(self, url: str) -> PostgresStore:
        store = self.stores.get(url)
        if store is None:
            store = PostgresStore(url)
            await store.start()
            self.stores[url] = store
        return store

    def pipelines(self, settings: WorkerSettings) -> dict[str, Pipeline]:
        key = (settings.pipelines, settings.demo_pipelines, settings.entry_points)
        catalog = self.catalogs.get(key)
        if catalog is None:
            catalog = load_pipelines(
                settings.pipelines,
                demos=settings.demo_pipelines,
                use_entry_points=settings.entry_points,
            )
            self.catalogs[key] = catalog
        return catalog


_process: _WorkerProcess | None = None


def execute_run(
    settings: WorkerSettings, run_id: str, epoch: int, owner: str, recover: bool
) -> dict[str, Any]:
    """Execute (or, with ``recover``, recover) run ``run_id``, claimed by ``owner`` under
    ``epoch``; return what became of it. Everything the run does is in the store."""
    global _process
    if _process is None:
        _process = _WorkerProcess()
    process = _process
    return process.loop.run_until_complete(
        _execute(process, settings, run_id, epoch, owner, recover)
    )


async def _execute(
    process: _WorkerProcess,
    settings: WorkerSettings,
    run_id: str,
    epoch: int,
    owner: str,
    recover: bool,
) -> dict[str, Any]:
    store = await process.store(settings.database_url)
    pipelines = process.pipelines(settings)
    run = await store.get_run(run_id)
    outcome: dict[str, Any] = {"run_id": run_id, "pid": os.getpid()}
    if run.epoch != epoch or run.status in TERMINAL:
        # Taken over (or ended) while this task waited for a worker: not ours to touch.
        return {**outcome, "status": run.status.value, "executed": False}
    execution = RunExecution(
        store,
        EventBus(),
        pipelines,
        run,
        progress_interval=settings.progress_interval,
        max_recovery_attempts=settings.max_recovery_attempts,
    )
    watch = asyncio.create_task(_watch(store, execution, owner, settings.lease_seconds))
    try:
        await (execution.recover() if recover else execution.execute())
    finally:
        watch.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watch
    final = await store.get_run(run_id)
    return {**outcome, "status": final.status.value, "executed": True}


async def _watch(store: PostgresStore, execution: RunExecution, owner: str, lease: float) -> None:
    """Renew the run's lease and pass a cancel on, until the run ends or is lost."""
    run_id, epoch = execution.run_id, execution.epoch
    renew_every = lease / HEARTBEATS_PER_LEASE
    next_renewal = time.monotonic() + renew_every
    cancelled = False
    while True:
        await asyncio.sleep(min(CANCEL_POLL_SECONDS, renew_every))
        try:
            if time.monotonic() >= next_renewal:
                next_renewal = time.monotonic() + renew_every
                if await store.renew_leases(owner, {run_id: epoch}, lease):
                    execution.lose()
                    return
            if cancelled:
                continue
            current = await store.get_run(run_id)
            if current.epoch != epoch:
                execution.lose()
                return
            if current.cancel_requested:
                # False until the run has an orchestrator: asked again at the next poll.
                cancelled = execution.cancel(current.rollback_on_cancel)
        except Exception:
            log.exception("run %s: cannot renew its lease or read it", run_id)
