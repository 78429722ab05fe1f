"""In-process workers: a bounded pool that pulls queued runs from the store and runs them.

Queued runs live in the database, so they survive a restart. Each run is one asyncio task:
async steps run on the loop, sync steps in worker threads. One run's failure never touches
another: everything a run raises is caught and recorded on that run.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import socket
import uuid
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Any

from app.errors import LeaseLost
from app.pipelines.catalog import Pipeline, RunPlan
from app.runs.bus import EventBus
from app.runs.checkpoint import checkpoint_of, restore
from app.runs.recorder import RunRecorder, error_document
from app.states import TERMINAL, RollbackStatus, RunStatus, StepStatus
from app.store.base import Store
from app.store.records import Change, RunRow, StepRow
from steps import (
    CancellationToken,
    OrchestrationError,
    Orchestrator,
    Recovery,
    RuntimeContext,
    StepCheckpoint,
    StepResult,
)

__all__ = ["WorkerPool"]

log = logging.getLogger("stepline.worker")

StepTimer = Callable[[str, str, float], None]
HEARTBEATS_PER_LEASE = 3
ABANDON_SECONDS = 2.0  # how long interrupted steps get to reach a cancellation point


class WorkerPool:
    """Runs up to ``concurrency`` runs at once, oldest queued first."""

    def __init__(
        self,
        store: Store,
        bus: EventBus,
        pipelines: dict[str, Pipeline],
        *,
        concurrency: int,
        poll_seconds: float,
        progress_interval: float,
        lease_seconds: float,
        max_recovery_attempts: int = 3,
        owner: str | None = None,
        on_step_finished: StepTimer | None = None,
    ) -> None:
        self.store, self.bus, self.pipelines = store, bus, pipelines
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.lease_seconds = lease_seconds
        self.max_recovery_attempts = max_recovery_attempts
        self.concurrency = concurrency
        self.poll_seconds = poll_seconds
        self.progress_interval = progress_interval
        self.on_step_finished = on_step_finished
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._running: dict[str, tuple[Orchestrator[Any], RunRecorder]] = {}
        self._epochs: dict[str, int] = {}
        self._dispatcher: asyncio.Task[None] | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        self._recovery: asyncio.Task[None] | None = None
        self._stopping = False
        self._stop_event = asyncio.Event()
        self._held: dict[str, int] = {}

    @property
    def busy(self) -> int:
        """How many runs are executing now."""
        return len(self._tasks)

    def start(self) -> None:
        self._dispatcher = asyncio.create_task(self._dispatch(), name="stepline-dispatcher")
        self._heartbeat = asyncio.create_task(self._renew(), name="stepline-heartbeat")
        self._recovery = asyncio.create_task(self._recover_periodically(), name="stepline-recovery")

    def wake(self) -> None:
        """A run was queued: look now rather than at the next poll."""
        self._wakeup.set()

    def cancel(self, run_id: str, rollback: bool) -> bool:
        """Cancel a run executing here; False if it is not executing here."""
        running = self._running.get(run_id)
        if running is None:
            return False
        orchestrator = running[0]
        orchestrator.rollback_on_cancel = rollback
        orchestrator.cancel("cancelled by request")
        return True

    async def drain(self, within: float) -> None:
        """Wait until no run is queued or executing (for tests and benchmarks)."""
        async with asyncio.timeout(within):
            while True:
                self._idle.clear()
                self.wake()
                await self._idle.wait()
                if not self._tasks:
                    return

    def begin_stop(self) -> None:
        """Take no more runs; let each running step finish, then stop its run there."""
        if self._stopping:
            return
        self._stopping = True
        self._held = dict(self._epochs)  # released at the end, whenever their runs stop
        # The claim loops are told, not cancelled: a claim cut short would still commit,
        # leaving a run owned by nobody alive until its lease ran out.
        self._stop_event.set()
        self.wake()
        for orchestrator, recorder in self._running.values():
            recorder.leave_open()
            orchestrator.stop_after_step("the service is stopping")

    async def stop(self, grace: float) -> None:
        """Stop gracefully within ``grace`` seconds, and release every unfinished run.

        Running steps get ``grace`` seconds to finish (their runs then stop at the step
        boundary, everything recorded); steps still running after that are interrupted,
        with nothing rolled back. Either way the run is released, so that the next start
        takes it over at once: it resumes from the boundary, or is recovered per its
        pipeline's policy if a step was interrupted.
        """
        self.begin_stop()
        loops = [t for t in (self._dispatcher, self._recovery) if t is not None]
        if loops:
            _done, stuck = await asyncio.wait(loops, timeout=ABANDON_SECONDS)
            for task in stuck:
                task.cancel()
        held = {**self._held, **self._epochs}
        tasks = list(self._tasks.values())
        if tasks:
            _done, late = await asyncio.wait(tasks, timeout=grace)
            for task in late:
                running = self._running.get(task.get_name().removeprefix("run-"))
                if running is not None:
                    running[1].detach()
                    running[0].abandon("the service is stopping")
            if late:
                _done, late = await asyncio.wait(late, timeout=ABANDON_SECONDS)
            for task in late:
                # Its step ignores cancellation and may still be running in a thread: keep
                # the run owned until its lease runs out, so nobody else runs it meanwhile.
                held.pop(task.get_name().removeprefix("run-"), None)
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for background in (self._dispatcher, self._recovery, self._heartbeat):
            if background is not None:
                background.cancel()
                await asyncio.gather(background, return_exceptions=True)
        for run_id, epoch in held.items():
            with contextlib.suppress(Exception):
                await self.store.release(run_id, epoch)

    async def _dispatch(self) -> None:
        while not self._stopping:
            free = self.concurrency - len(self._tasks)
            claimed = []
            if free > 0:
                try:
                    claimed = await self.store.claim_queued(free, self.owner, self.lease_seconds)
                except Exception:
                    log.exception("cannot claim queued runs")
            for run, event in claimed:
                self.bus.publish(event)
                self._start_task(run, self._execute(run))
            if not claimed and not self._tasks:
                self._idle.set()
            if claimed and len(claimed) == free:
                continue  # there may be more waiting
            self._wakeup.clear()
            try:
                async with asyncio.timeout(self.poll_seconds):
                    await self._wakeup.wait()
            except TimeoutError:
                pass

    def _start_task(self, run: RunRow, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work, name=f"run-{run.id}")
        self._tasks[run.id] = task
        task.add_done_callback(functools.partial(self._done, run.id))

    def _done(self, run_id: str, _task: asyncio.Task[None]) -> None:
        self._tasks.pop(run_id, None)
        self._running.pop(run_id, None)
        self._epochs.pop(run_id, None)
        self.wake()

    async def _renew(self) -> None:
        """Heartbeat: renew the leases of the runs executing here, often enough that one
        late renewal does not lose them; drop the runs another owner has taken."""
        while True:
            await asyncio.sleep(self.lease_seconds / HEARTBEATS_PER_LEASE)
            if not self._epochs:
                continue
            try:
                lost = await self.store.renew_leases(
                    self.owner, dict(self._epochs), self.lease_seconds
                )
            except Exception:
                log.exception("cannot renew leases")
                continue
            for run_id in lost:
                self._lost(run_id)

    def _lost(self, run_id: str) -> None:
        """Another owner has this run now: stop working on it, write nothing more."""
        running = self._running.get(run_id)
        if running is None:
            return
        log.warning("run %s: another owner took it over; abandoning it here", run_id)
        orchestrator, recorder = running
        recorder.detach()
        orchestrator.abandon("another owner took this run over")

    def _prepare(self, run: RunRow) -> tuple[Orchestrator[Any], RunPlan]:
        """Build the run's pipeline and an orchestrator whose every write is fenced."""
        pipeline = self.pipelines[run.pipeline]
        params = pipeline.params_model.model_validate(run.params)
        runtime = RuntimeContext(run_id=run.id, cancellation=CancellationToken())
        plan = pipeline.plan(params, runtime)
        orchestrator: Orchestrator[Any] = Orchestrator(
            plan.registry, plan.context, rollback_on_cancel=run.rollback_on_cancel
        )
        recorder = RunRecorder(
            self.store,
            self.bus,
            run.id,
            epoch=run.epoch,
            progress_interval=self.progress_interval,
            result=lambda: _result(orchestrator, plan),
            on_step_finished=self._timer(run.pipeline),
            on_lease_lost=lambda: self._lost(run.id),
            checkpoint=lambda: checkpoint_of(plan.context),
        )
        orchestrator.observers.append(recorder)
        self._running[run.id] = (orchestrator, recorder)
        self._epochs[run.id] = run.epoch
        if self._stopping:  # claimed just before the stop began
            self._held[run.id] = run.epoch
            recorder.leave_open()
            orchestrator.stop_after_step("the service is stopping")
        return orchestrator, plan

    async def _honour_cancel(self, run_id: str, orchestrator: Orchestrator[Any]) -> None:
        """A cancel that came while the run was being claimed found nothing to cancel."""
        current = await self.store.get_run(run_id)
        if current.cancel_requested:
            orchestrator.rollback_on_cancel = current.rollback_on_cancel
            orchestrator.cancel("cancelled by request")

    async def _execute(self, run: RunRow) -> None:
        try:
            orchestrator, _plan = self._prepare(run)
            await self._honour_cancel(run.id, orchestrator)
            await orchestrator.execute_async()
        except OrchestrationError:
            pass  # the run's failure or cancel is recorded by its observer
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("run %s failed outside its steps", run.id)
            await self._flush(run.id)
            await self._fail(run.id, run.epoch, exc)
        else:
            await self._flush(run.id)

    # -- recovery ------------------------------------------------------------------------

    async def recover(self) -> int:
        """Take over runs whose owner stopped renewing its lease and finish them, each per
        its pipeline's policy; return how many were taken."""
        free = self.concurrency - len(self._tasks)
        if free <= 0 or self._stopping:
            return 0
        orphans = await self.store.claim_orphans(free, self.owner, self.lease_seconds)
        for run in orphans:
            self._start_task(run, self._recover(run))
        return len(orphans)

    async def _recover_periodically(self) -> None:
        while not self._stopping:
            try:
                await self.recover()
            except Exception:
                log.exception("cannot recover runs")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.lease_seconds / HEARTBEATS_PER_LEASE):
                    await self._stop_event.wait()

    async def _recover(self, run: RunRow) -> None:
        # A run stopped cleanly between steps (a graceful shutdown) lost nothing: it
        # resumes and does not count as a recovery attempt. One whose step was cut short,
        # or that failed or was being undone or cancelled, follows its policy and counts.
        unsettled = run.status is not RunStatus.running or any(
            s.status in _UNSETTLED for s in run.steps
        )
        attempt = run.recovery_attempts + (1 if unsettled else 0)
        try:
            if attempt > self.max_recovery_attempts:
                await self._give_up(run, attempt - 1)
                return
            pipeline = self.pipelines[run.pipeline]
            cancelling = run.status is RunStatus.cancelling
            failed = any(s.status in _ENDED_BADLY for s in run.steps)
            if run.status is not RunStatus.running or failed:
                how = Recovery.rollback  # finish the rollback or cancel that had begun
            elif not unsettled:
                how = Recovery.resume  # stopped between steps: nothing to redo or undo
            else:
                how = pipeline.recovery
            reason = (
                f"the process executing this run stopped; recovered by {how.value} "
                f"(attempt {attempt} of {self.max_recovery_attempts})"
            )
            recovered = Change(
                "run.recovered",
                {"attempt": attempt, "how": how.value, "interrupted": run.status.value,
                 "reason": reason},
                run={"recovery_attempts": attempt},
            )  # fmt: skip
            self.bus.publish(await self.store.apply(run.id, recovered, run.epoch))
            orchestrator, plan = self._prepare(run)
            restore(plan.context, run.checkpoint or {})
            await self._honour_cancel(run.id, orchestrator)
            await orchestrator.recover_async(
                [_checkpoint(step) for step in run.steps], how, reason, cancelled=cancelling
            )
        except OrchestrationError:
            pass  # recorded by the observer
        except LeaseLost:
            pass  # another owner took it meanwhile
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("run %s could not be recovered", run.id)
            await self._flush(run.id)
            await self._fail(run.id, run.epoch, exc)
        else:
            await self._flush(run.id)

    async def _flush(self, run_id: str) -> None:
        """Write what the run's recorder still holds, should the run end without a last
        transition to carry it (a run always ends with one, unless something broke)."""
        running = self._running.get(run_id)
        if running is not None:
            with contextlib.suppress(Exception):  # logged by the recorder
                await running[1].flush()

    async def _give_up(self, run: RunRow, attempts: int) -> None:
        reason = (
            f"gave up after {attempts} recovery attempts: the run stopped its process every time"
        )
        change = Change(
            "run.failed",
            {"error": {"type": "RecoveryExhausted", "message": reason, "step": None},
             "summary": reason},
            run={"status": RunStatus.failed, "finished_at": datetime.now(UTC), "summary": reason,
                 "error": {"type": "RecoveryExhausted", "message": reason, "step": None}},
            steps={s.index: _given_up(s) for s in run.steps if _given_up(s)},
        )  # fmt: skip
        self.bus.publish(await self.store.apply(run.id, change, run.epoch))

    async def _fail(self, run_id: str, epoch: int, exc: BaseException) -> None:
        current = await self.store.get_run(run_id)
        if current.status in TERMINAL:
            return
        error = error_document(exc)
        change = Change(
            "run.failed",
            {"error": {"type": error["type"], "message": error["message"], "step": None}},
            run={"status": RunStatus.failed, "error": error, "finished_at": datetime.now(UTC)},
        )
        with contextlib.suppress(LeaseLost):
            self.bus.publish(await self.store.apply(run_id, change, epoch))

    def _timer(self, pipeline: str) -> Callable[[str, float], None] | None:
        if self.on_step_finished is None:
            return None
        timer = self.on_step_finished
        return lambda step, seconds: timer(pipeline, step, seconds)


def _result(orchestrator: Orchestrator[Any], plan: RunPlan) -> dict[str, Any]:
    """What a succeeded run returns: the orchestrator's summary, each step's data, and
    what the pipeline itself reports."""
    report = orchestrator.report
    assert report is not None
    return {
        "success": True,
        "steps_executed": report.steps_executed,
        "steps_total": len(report.steps),
        "steps": {s.name: s.result.data for s in report.steps if s.result and s.result.data},
        **plan.result(plan.context),
    }


def _checkpoint(step: StepRow) -> StepCheckpoint:
    """A stored step as the step library resumes or rolls back from it."""
    status = StepStatus(step.status)
    result = None
    if step.result_data is not None or step.rollback_data is not None:
        result = StepResult(
            success=status is not StepStatus.failed,
            data=step.result_data or {},
            rollback_data=step.rollback_data or {},
        )
    return StepCheckpoint(status, RollbackStatus(step.rollback_status), step.attempts, result)


_UNSETTLED = frozenset({StepStatus.running, StepStatus.failed, StepStatus.cancelled})
_ENDED_BADLY = frozenset({StepStatus.failed, StepStatus.cancelled})


def _given_up(step: StepRow) -> dict[str, Any]:
    """What a run that gives up says of a step it leaves: nothing is left in progress."""
    values: dict[str, Any] = {}
    if step.status == StepStatus.running:
        values["status"] = StepStatus.failed
    if step.rollback_status in (RollbackStatus.pending, RollbackStatus.running):
        values["rollback_status"] = RollbackStatus.failed
        values["rollback_error"] = {
            "type": "RecoveryExhausted",
            "message": "not undone: recovery gave up",
        }
    return values
