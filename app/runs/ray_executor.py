"""Runs executed on a Ray cluster: the API replica claims them, a Ray worker executes them.

**Dispatch.** Each replica claims queued runs from the store as the in-process pool does
(``FOR UPDATE SKIP LOCKED``: two replicas never take the same run) and, instead of
executing one, submits a Ray task for it (``app.runs.remote.execute_run``) with the
resources its pipeline declares. A replica keeps at most ``concurrency`` runs in flight on
the cluster; the rest wait queued in the database, where any replica can take them. The
task writes everything the run does to PostgreSQL itself, fenced by the epoch of the claim.

**Leases.** The task renews the run's lease while it executes. The replica renews it too,
until the task's first write (the run's log grows past where it was when claimed), so that
a run waiting in Ray's queue for its resources is not taken for an orphan; from then on
only the task's renewals keep the run, so a worker process that stops without dying
(stopped, hung with its machine) lets the lease run out, and the run is taken over under a
new epoch while the stale task can write nothing more. (A cancel written while the task
still waits counts as a write too: should it then wait in Ray's queue past the lease, the
cancel is finished by recovery instead.) Ray does not retry a task
(``max_retries=0``): a retry would run the same claim again from its first step. A task
whose worker process died (killed, out of memory) has its run released at once, so that
recovery need not wait for the lease. A task whose run was taken over stays in flight
here until Ray reports it ended (``drain`` waits for it, ``stop`` stops it), but no longer
counts against ``concurrency``.

**Cancel.** The replica that receives a cancel writes it to the store; the task polls for it
and cancels the run where it executes, with the rollback setting stored with the cancel.

**Recovery.** One replica at a time reconciles: the holder of a PostgreSQL advisory lock
(``app.store.leadership``), which takes the runs whose lease ran out and submits each to
Ray for recovery per its pipeline's policy (``RunExecution.recover``). Queued runs need no
reconciling: every replica's dispatcher claims them.

**Shutdown.** A stopping replica claims nothing more and gives its runs in flight the grace
period to end. Ray ties a task to the process that submitted it, so the runs still
executing after that are stopped (their worker processes killed, nothing rolled back) and
released, for a replica's reconciler to recover them per their pipeline's policy.

Per-pipeline concurrency caps hold across the cluster: they count the runs claimed in the
database, whoever claimed them (``Store.claim_queued``).

**Joining the cluster.** ``address`` is a Ray node's GCS (``host:6379``: this process must
run on a node of the cluster, beside a raylet) or a Ray Client server (``ray://host:10001``:
anywhere, as the API replicas of deploy/compose.yaml do). The executor uses the Ray APIs that
behave alike in both (tasks, their refs' futures, ``ray.cancel``); the tests run it both ways.
Over Ray Client the head starts a server process for each replica, which submits its tasks:
that process must import ``app`` too, so the head runs Stepline's image as the workers do.

Not done here: runs that outlive the replica that dispatched them (a detached actor per run
would); step-duration metrics of runs executed on Ray.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import os
import signal
import socket
import threading
import uuid
from collections.abc import Coroutine, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import ray
from ray.exceptions import OutOfMemoryError, TaskCancelledError, WorkerCrashedError

from app.pipelines.catalog import Pipeline, concurrency_limits
from app.runs.bus import EventBus
from app.runs.execution import RunExecution
from app.runs.remote import WorkerSettings, execute_run
from app.store.base import Store
from app.store.leadership import Leadership
from app.store.records import RunRow

__all__ = ["RayExecutor"]

log = logging.getLogger("stepline.ray")

HEARTBEATS_PER_LEASE = 3
CLIENT_PREFIX = "ray://"
# Ray Client's head forks a server process for each client, and with gRPC's fork support on
# in the head (GRPC_ENABLE_FORK_SUPPORT; deploy/compose.yaml turns it off) that process now
# and then dies as it starts (a race with gRPC's threads in the forking process; Ray issue
# 63202): the connection then fails, after about 40 s, with ConnectionAbortedError, and the
# next attempt gets a new process.
CLIENT_CONNECT_ATTEMPTS = 3
ABANDON_SECONDS = 5.0  # how long killed tasks get to be reported ended by Ray
# Ray reports these once the worker process that executed the task is gone: nothing of the
# run can still be executing, so it may be recovered at once.
_PROCESS_GONE = (WorkerCrashedError, OutOfMemoryError, TaskCancelledError)
_DISPATCHER, _RECONCILER = "stepline-ray-dispatcher", "stepline-ray-reconciler"
_CLAIMERS = frozenset({_DISPATCHER, _RECONCILER})


@contextlib.contextmanager
def _signal_handlers_kept() -> Iterator[None]:
    """``ray.init`` makes SIGTERM exit the process at once: the server's own handler, which
    shuts down gracefully, is put back."""
    kept = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        if threading.current_thread() is threading.main_thread():
            for sig, handler in kept.items():
                if handler is not None:
                    signal.signal(sig, handler)


def _join(address: str | None) -> None:
    """``ray.init`` for ``address``: a driver on this node (or a local Ray, with no address),
    or a Ray Client, whose connection is tried again when the head fails to serve it."""
    if address is None or not address.startswith(CLIENT_PREFIX):
        ray.init(address=address, include_dashboard=False, namespace="stepline")
        return
    for attempt in range(1, CLIENT_CONNECT_ATTEMPTS + 1):
        try:
            # Only what Ray Client takes: the other options of ray.init would be passed to
            # the server process's own ray.init.
            ray.init(address=address, namespace="stepline")
            return
        except ConnectionError as exc:
            if attempt == CLIENT_CONNECT_ATTEMPTS:
                raise
            log.warning("cannot connect to Ray at %s (attempt %d of %d): %s; trying again",
                        address, attempt, CLIENT_CONNECT_ATTEMPTS, exc)  # fmt: skip


@dataclass(slots=True, eq=False)  # each claim is itself: kept in sets by identity
class _InFlight:
    """A run submitted to Ray and not yet reported ended."""

    run_id: str
    epoch: int
    owner: str
    seq: int  # the run's last event when it was claimed: the task has written nothing since
    ref: ray.ObjectRef[dict[str, Any]]
    done: asyncio.Future[dict[str, Any]]


class RayExecutor:
    """Claims queued and orphaned runs and has Ray execute them."""

    def __init__(
        self,
        store: Store,
        bus: EventBus,
        pipelines: Mapping[str, Pipeline],
        worker_settings: WorkerSettings,
        leadership: Leadership,
        *,
        address: str | None,
        concurrency: int,
        poll_seconds: float,
        lease_seconds: float,
        owner: str | None = None,
    ) -> None:
        self.store, self.bus, self.pipelines = store, bus, pipelines
        self.worker_settings, self.leadership = worker_settings, leadership
        self.address = address
        self.concurrency, self.poll_seconds = concurrency, poll_seconds
        self.lease_seconds = lease_seconds
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        # Each claim gets an owner name of its own: orphans are taken only from other
        # owners, and the run of a task that died here must be recoverable from here too.
        self._claims = itertools.count(1)
        self._task = ray.remote(max_retries=0, retry_exceptions=False)(execute_run)
        self._inflight: dict[str, _InFlight] = {}  # the latest claim of each run here
        self._superseded: set[_InFlight] = set()  # older claims whose tasks have not ended
        self._background: set[asyncio.Task[None]] = set()
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._stop_event = asyncio.Event()
        self._stopping = False
        self._started_ray = False
        self._loops: list[asyncio.Task[None]] = []

    @property
    def busy(self) -> int:
        return len(self._inflight)

    async def start(self) -> None:
        if not ray.is_initialized():
            # Blocking, once, before the service accepts requests.
            with _signal_handlers_kept():
                _join(self.address)
            self._started_ray = True
        self._loops = [
            asyncio.create_task(self._dispatch(), name=_DISPATCHER),
            asyncio.create_task(self._renew(), name="stepline-ray-heartbeat"),
            asyncio.create_task(self._reconcile(), name=_RECONCILER),
        ]

    def wake(self) -> None:
        self._wakeup.set()

    def cancel(self, run_id: str, rollback: bool) -> bool:
        return False  # the task finds the cancel in the store

    async def drain(self, within: float) -> None:
        async with asyncio.timeout(within):
            while True:
                self._idle.clear()
                self.wake()
                await self._idle.wait()
                if not self._inflight and not self._superseded:
                    return

    def begin_stop(self) -> None:
        if self._stopping:
            return
        self._stopping = True
        self._stop_event.set()
        self.wake()

    async def stop(self, grace: float) -> None:
        """Claim nothing more; give the runs in flight ``grace`` seconds to end, then stop
        and release the others, for recovery per their pipeline's policy."""
        self.begin_stop()
        claimers = [t for t in self._loops if t.get_name() in _CLAIMERS]
        if claimers:
            # Told, not cancelled: a claim cut short would still commit.
            _done, stuck = await asyncio.wait(claimers, timeout=ABANDON_SECONDS)
            for task in stuck:
                task.cancel()
        inflight = [*self._inflight.values(), *self._superseded]
        if inflight:
            _ended, late = await asyncio.wait([f.done for f in inflight], timeout=grace)
            for run in inflight:
                if run.done in late:
                    ray.cancel(run.ref, force=True)
            if late:
                await asyncio.wait(late, timeout=ABANDON_SECONDS)
        for task in self._loops:
            task.cancel()
        await asyncio.gather(*self._loops, *self._background, return_exceptions=True)
        await self.leadership.close()
        if self._started_ray:
            ray.shutdown()

    # -- dispatch ------------------------------------------------------------------------

    def _claim_owner(self) -> str:
        return f"{self.owner}/{next(self._claims)}"

    async def _dispatch(self) -> None:
        while not self._stopping:
            # Cleared before the claim, not after: a run queued while the claim runs (which
            # may not see it) leaves the event set, and is claimed at once rather than at
            # the next poll.
            self._wakeup.clear()
            free = self.concurrency - len(self._inflight)
            claimed = []
            if free > 0:
                owner = self._claim_owner()
                try:
                    claimed = await self.store.claim_queued(
                        free, owner, self.lease_seconds, concurrency_limits(self.pipelines)
                    )
                except Exception:
                    log.exception("cannot claim queued runs")
                for run, event in claimed:
                    self.bus.publish(event)
                    self._submit(run, owner, recover=False)
            if not claimed and not self._inflight and not self._superseded:
                self._idle.set()
            if claimed and len(claimed) == free:
                continue  # there may be more waiting
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll_seconds):
                    await self._wakeup.wait()

    def _submit(self, run: RunRow, owner: str, *, recover: bool) -> None:
        pipeline = self.pipelines.get(run.pipeline)
        options: dict[str, Any] = {"name": f"stepline:{run.pipeline}:{run.id}"}
        if pipeline is not None:  # else the task fails the run, as the local pool does
            options.update(pipeline.resources.ray_options())
        try:
            ref = self._task.options(**options).remote(
                self.worker_settings, run.id, run.epoch, owner, recover
            )
        except Exception as exc:  # options Ray refuses: the run could never be submitted
            log.exception("run %s cannot be submitted to Ray", run.id)
            self._in_background(self._fail(run, exc))
            return
        done = asyncio.wrap_future(ref.future())
        inflight = _InFlight(run.id, run.epoch, owner, run.last_seq, ref, done)
        older = self._inflight.get(run.id)
        if older is not None:  # taken over from a claim of this replica's, still executing
            self._superseded.add(older)
        self._inflight[run.id] = inflight
        done.add_done_callback(functools.partial(self._ended, inflight))

    def _ended(self, inflight: _InFlight, done: asyncio.Future[dict[str, Any]]) -> None:
        run_id = inflight.run_id
        if self._inflight.get(run_id) is inflight:  # not taken over by a newer claim here
            del self._inflight[run_id]
        self._superseded.discard(inflight)
        self.wake()
        if done.cancelled():
            return
        error = done.exception()
        if error is None:
            log.debug("run %s ended on Ray: %s", run_id, done.result())
            return
        if isinstance(error, _PROCESS_GONE):
            log.warning("run %s: its Ray worker stopped (%s); releasing it for recovery",
                        run_id, type(error).__name__)  # fmt: skip
            self._in_background(self._release(inflight))
        else:
            log.error("run %s: its Ray task failed", run_id, exc_info=error)

    def _in_background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _fail(self, run: RunRow, exc: BaseException) -> None:
        execution = RunExecution(
            self.store, self.bus, self.pipelines, run,
            progress_interval=self.worker_settings.progress_interval,
            max_recovery_attempts=self.worker_settings.max_recovery_attempts,
        )  # fmt: skip
        try:
            await execution.fail(exc)
        except Exception:
            log.exception("run %s: cannot record its failure", run.id)

    async def _release(self, inflight: _InFlight) -> None:
        try:
            await self.store.release(inflight.run_id, inflight.epoch)
        except Exception:
            log.exception("run %s: cannot release it; recovered when its lease runs out",
                          inflight.run_id)  # fmt: skip
        self.wake()

    async def _renew(self) -> None:
        """Keep the runs in flight owned while they wait for a Ray worker: until the task
        writes, after which its own renewals are the proof that it is alive."""
        while True:
            await asyncio.sleep(self.lease_seconds / HEARTBEATS_PER_LEASE)
            by_owner: dict[str, list[_InFlight]] = {}
            for run in list(self._inflight.values()):
                by_owner.setdefault(run.owner, []).append(run)
            for owner, runs in by_owner.items():
                try:
                    await self.store.renew_leases(
                        owner,
                        {run.run_id: run.epoch for run in runs},
                        self.lease_seconds,
                        while_last_seq={run.run_id: run.seq for run in runs},
                    )
                except Exception:
                    log.exception("cannot renew leases")

    # -- recovery ------------------------------------------------------------------------

    async def recover(self) -> int:
        """If this replica leads, submit the runs whose lease ran out for recovery."""
        # The lead is checked on every sweep, busy or not: a leader that stops checking
        # loses its session to the database's idle timeout, and the lead with it.
        if self._stopping or not await self.leadership.lead():
            return 0
        free = self.concurrency - len(self._inflight)
        if free <= 0:
            return 0
        owner = self._claim_owner()
        orphans = await self.store.claim_orphans(free, owner, self.lease_seconds)
        for run in orphans:
            self._submit(run, owner, recover=True)
        return len(orphans)

    async def _reconcile(self) -> None:
        while not self._stopping:
            try:
                await self.recover()
            except Exception:
                log.exception("cannot recover runs")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.lease_seconds / HEARTBEATS_PER_LEASE):
                    await self._stop_event.wait()
