"""In-process workers: a bounded pool that pulls queued runs from the store and runs them.

Queued runs live in the database, so they survive a restart. Each run is one asyncio task
(a ``RunExecution``): async steps run on the loop, sync steps in the pool's threads, one per
run it executes at once (the loop's default executor has only ``min(32, cpu_count() + 4)``,
so more runs than that would queue for a thread, their timeouts counting). One run's
failure never touches another: everything a run raises is caught and recorded on that run.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import socket
import uuid
from concurrent.futures import ThreadPoolExecutor

from app.pipelines.catalog import Pipeline, concurrency_limits
from app.runs.bus import EventBus
from app.runs.execution import RunExecution, StepTimer
from app.store.base import Store
from app.store.records import RunRow

__all__ = ["WorkerPool"]

log = logging.getLogger("stepline.worker")

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
        self._running: dict[str, RunExecution] = {}
        self._epochs: dict[str, int] = {}
        self._dispatcher: asyncio.Task[None] | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        self._recovery: asyncio.Task[None] | None = None
        self._stopping = False
        self._stop_event = asyncio.Event()
        self._held: dict[str, int] = {}
        self._threads = ThreadPoolExecutor(max(concurrency, 1), thread_name_prefix="stepline-step")

    @property
    def busy(self) -> int:
        """How many runs are executing now."""
        return len(self._tasks)

    async def start(self) -> None:
        self._dispatcher = asyncio.create_task(self._dispatch(), name="stepline-dispatcher")
        self._heartbeat = asyncio.create_task(self._renew(), name="stepline-heartbeat")
        self._recovery = asyncio.create_task(self._recover_periodically(), name="stepline-recovery")

    def wake(self) -> None:
        """A run was queued: look now rather than at the next poll."""
        self._wakeup.set()

    def cancel(self, run_id: str, rollback: bool) -> bool:
        """Cancel a run executing here; False if it is not executing here."""
        execution = self._running.get(run_id)
        return execution is not None and execution.cancel(rollback)

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
        for execution in self._running.values():
            execution.stop_after_step("the service is stopping")

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
                execution = self._running.get(task.get_name().removeprefix("run-"))
                if execution is not None:
                    execution.abandon("the service is stopping")
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
        # Without waiting: a step that ignored every cancel may still hold its thread.
        self._threads.shutdown(wait=False)

    async def _dispatch(self) -> None:
        while not self._stopping:
            # Cleared before the claim, not after: a run queued while the claim runs (which
            # may not see it) leaves the event set, and is claimed at once rather than at
            # the next poll.
            self._wakeup.clear()
            free = self.concurrency - len(self._tasks)
            claimed = []
            if free > 0:
                try:
                    claimed = await self.store.claim_queued(
                        free, self.owner, self.lease_seconds, concurrency_limits(self.pipelines)
                    )
                except Exception:
                    log.exception("cannot claim queued runs")
            for run, event in claimed:
                self.bus.publish(event)
                self._start(run, recover=False)
            if not claimed and not self._tasks:
                self._idle.set()
            if claimed and len(claimed) == free:
                continue  # there may be more waiting
            try:
                async with asyncio.timeout(self.poll_seconds):
                    await self._wakeup.wait()
            except TimeoutError:
                pass

    def _start(self, run: RunRow, *, recover: bool) -> None:
        execution = RunExecution(
            self.store,
            self.bus,
            self.pipelines,
            run,
            progress_interval=self.progress_interval,
            max_recovery_attempts=self.max_recovery_attempts,
            on_step_finished=self.on_step_finished,
            threads=self._threads,
        )
        self._running[run.id] = execution
        self._epochs[run.id] = run.epoch
        if self._stopping:  # claimed just before the stop began
            self._held[run.id] = run.epoch
            execution.stop_after_step("the service is stopping")
        work = execution.recover() if recover else execution.execute()
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
        execution = self._running.get(run_id)
        if execution is not None:
            execution.lose()

    # -- recovery ------------------------------------------------------------------------

    async def recover(self) -> int:
        """Take over runs whose owner stopped renewing its lease and finish them, each per
        its pipeline's policy; return how many were taken."""
        free = self.concurrency - len(self._tasks)
        if free <= 0 or self._stopping:
            return 0
        orphans = await self.store.claim_orphans(free, self.owner, self.lease_seconds)
        for run in orphans:
            self._start(run, recover=True)
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
