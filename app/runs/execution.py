"""One run executing in this process: its pipeline built, executed or recovered, recorded.

What every executor shares, wherever the run executes (the in-process pool, a Ray worker):
the run's registry and context are built from its pipeline and params, an ``Orchestrator``
executes them with a ``RunRecorder`` observer, and every write carries the epoch the run was
claimed under, so that once another owner has taken the run this one writes nothing more.
A run that crashed its last owner is recovered per its pipeline's policy. How the run was
claimed, and who renews its lease meanwhile, is the caller's business.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
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

__all__ = ["RunExecution", "StepTimer"]

log = logging.getLogger("stepline.worker")

StepTimer = Callable[[str, str, float], None]  # (pipeline, step, seconds)


class RunExecution:
    """One claimed run: ``execute`` it, or ``recover`` it after its last owner stopped.

    ``cancel``, ``lose``, ``stop_after_step`` and ``abandon`` may be called at any time;
    before the run's orchestrator exists, a stop is remembered and a cancel is found in the
    store once it does.
    """

    def __init__(
        self,
        store: Store,
        bus: EventBus,
        pipelines: Mapping[str, Pipeline],
        run: RunRow,
        *,
        progress_interval: float,
        max_recovery_attempts: int,
        on_step_finished: StepTimer | None = None,
        threads: Executor | None = None,
    ) -> None:
        self.store, self.bus, self.pipelines, self.run = store, bus, pipelines, run
        self.threads = threads  # where sync steps run (the loop's default executor if None)
        self.epoch = run.epoch
        self.progress_interval = progress_interval
        self.max_recovery_attempts = max_recovery_attempts
        self.on_step_finished = on_step_finished
        self._orchestrator: Orchestrator[Any] | None = None
        self._recorder: RunRecorder | None = None
        self._stop_reason: str | None = None

    @property
    def run_id(self) -> str:
        return self.run.id

    # -- control, from the executor ------------------------------------------------------

    def cancel(self, rollback: bool) -> bool:
        """Cancel the run; False if it has no orchestrator yet (the cancel is then found in
        the store when it gets one)."""
        if self._orchestrator is None:
            return False
        self._orchestrator.rollback_on_cancel = rollback
        self._orchestrator.cancel("cancelled by request")
        return True

    def lose(self) -> None:
        """Another owner has this run now: stop working on it, write nothing more."""
        if self._orchestrator is None or self._recorder is None:
            return  # its first write will find out, and change nothing
        log.warning("run %s: another owner took it over; abandoning it here", self.run_id)
        self.abandon("another owner took this run over")

    def stop_after_step(self, reason: str) -> None:
        """Record the step in progress, then stop at the step boundary, leaving the run open
        for the next owner to carry on."""
        self._stop_reason = reason
        if self._orchestrator is not None and self._recorder is not None:
            self._recorder.leave_open()
            self._orchestrator.stop_after_step(reason)

    def abandon(self, reason: str) -> None:
        """Stop at once, write nothing more, undo nothing: recovery finishes the run."""
        if self._orchestrator is not None and self._recorder is not None:
            self._recorder.detach()
            self._orchestrator.abandon(reason)

    # -- building ------------------------------------------------------------------------

    def _prepare(self) -> tuple[Orchestrator[Any], RunPlan]:
        """Build the run's pipeline and an orchestrator whose every write is fenced."""
        run = self.run
        pipeline = self.pipelines[run.pipeline]
        params = pipeline.params_model.model_validate(run.params)
        runtime = RuntimeContext(run_id=run.id, cancellation=CancellationToken())
        plan = pipeline.plan(params, runtime)
        orchestrator: Orchestrator[Any] = Orchestrator(
            plan.registry,
            plan.context,
            rollback_on_cancel=run.rollback_on_cancel,
            executor=self.threads,
        )
        recorder = RunRecorder(
            self.store,
            self.bus,
            run.id,
            epoch=run.epoch,
            progress_interval=self.progress_interval,
            result=lambda: _result(orchestrator, plan),
            on_step_finished=self._timer(run.pipeline),
            on_lease_lost=self.lose,
            checkpoint=lambda: checkpoint_of(plan.context),
        )
        orchestrator.observers.append(recorder)
        self._orchestrator, self._recorder = orchestrator, recorder
        if self._stop_reason is not None:  # the stop came before the orchestrator
            self.stop_after_step(self._stop_reason)
        return orchestrator, plan

    async def _honour_cancel(self) -> None:
        """A cancel that came while the run was being claimed found nothing to cancel."""
        rollback = await self.store.cancel_request(self.run_id)
        if rollback is not None:
            self.cancel(rollback)

    # -- executing -----------------------------------------------------------------------

    async def execute(self) -> None:
        """Execute a run just claimed from the queue; everything it raises is recorded."""
        try:
            orchestrator, _plan = self._prepare()
            await self._honour_cancel()
            await orchestrator.execute_async()
        except OrchestrationError:
            pass  # the run's failure or cancel is recorded by its observer
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("run %s failed outside its steps", self.run_id)
            await self.flush()
            await self.fail(exc)
        else:
            await self.flush()

    async def recover(self) -> None:
        """Finish a run whose owner stopped renewing its lease, per its pipeline's policy."""
        run = self.run
        # A run stopped cleanly between steps (a graceful shutdown) lost nothing: it
        # resumes and does not count as a recovery attempt. One whose step was cut short,
        # or that failed or was being undone or cancelled, follows its policy and counts.
        unsettled = run.status is not RunStatus.running or any(
            s.status in _UNSETTLED for s in run.steps
        )
        attempt = run.recovery_attempts + (1 if unsettled else 0)
        try:
            if attempt > self.max_recovery_attempts:
                await self._give_up(attempt - 1)
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
            orchestrator, plan = self._prepare()
            restore(plan.context, run.checkpoint or {})
            await self._honour_cancel()
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
            await self.flush()
            await self.fail(exc)
        else:
            await self.flush()

    async def flush(self) -> None:
        """Write what the run's recorder still holds, should the run end without a last
        transition to carry it (a run always ends with one, unless something broke)."""
        if self._recorder is not None:
            with contextlib.suppress(Exception):  # logged by the recorder
                await self._recorder.flush()

    async def _give_up(self, attempts: int) -> None:
        run = self.run
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

    async def fail(self, exc: BaseException) -> None:
        """End the run failed with ``exc``, unless it has ended already."""
        current = await self.store.get_run(self.run_id)
        if current.status in TERMINAL:
            return
        error = error_document(exc)
        change = Change(
            "run.failed",
            {"error": {"type": error["type"], "message": error["message"], "step": None}},
            run={"status": RunStatus.failed, "error": error, "finished_at": datetime.now(UTC)},
        )
        with contextlib.suppress(LeaseLost):
            self.bus.publish(await self.store.apply(self.run_id, change, self.epoch))

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
