"""Pipelines the Ray executor tests drive: steps that say where they ran, wait, or block."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from app.pipelines.resources import Resources
from steps import (
    ActionParams,
    BaseAction,
    BaseStep,
    Recovery,
    StepRegistry,
    StepResult,
)
from tests.app.pipelines import (
    FileGateAction,
    FileGated,
    FileGateParams,
    Named,
    ParamsAction,
    wait_for_file,
)

BLOCK_SECONDS = 60.0  # longer than any test waits: only a cancel or a kill ends the wait


def _where() -> dict[str, Any]:
    import app

    return {"pid": os.getpid(), "app": app.__file__}


class SyncWhere(BaseStep[Any]):
    name = "sync_where"
    progress_weight = 1.0

    def execute(self, context: Any) -> StepResult:
        return StepResult(data=_where())


class AsyncWhere(BaseStep[Any]):
    name = "async_where"
    progress_weight = 1.0

    async def execute(self, context: Any) -> StepResult:  # type: ignore[override]
        await asyncio.sleep(0)
        return StepResult(data=_where())


class MixedAction(BaseAction[ActionParams]):
    """A sync step and an async step, each reporting the process it ran in."""

    name = "mixed"
    resources = Resources(num_cpus=0.5)

    def setup_steps(self, registry: StepRegistry[Any]) -> None:
        registry.register(SyncWhere())
        registry.register(AsyncWhere())


class Undoable(BaseStep[Any]):
    name = "prepare"
    progress_weight = 1.0

    def execute(self, context: Any) -> StepResult:
        return StepResult(data=_where())

    def rollback(self, context: Any, result: StepResult) -> None:
        pass  # nothing to undo, but it can be: the run shows it rolled back


class WaitForCancel(BaseStep[Any]):
    name = "wait"
    progress_weight = 1.0

    def execute(self, context: Any) -> StepResult:
        context.cancellation.wait(BLOCK_SECONDS)
        context.check_cancelled()
        return StepResult()


class WaitingAction(BaseAction[ActionParams]):
    """A step that succeeds, then one that waits until the run is cancelled."""

    name = "waiting"

    def setup_steps(self, registry: StepRegistry[Any]) -> None:
        registry.register(Undoable())
        registry.register(WaitForCancel())


class PidParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pid_file: str


class BlockOnce(BaseStep[Any]):
    """Logs its process id, keeps it in ``pid_file``, and blocks; run again, it finishes."""

    name = "block_once"
    progress_weight = 1.0

    def execute(self, context: Any) -> StepResult:
        pid_file = Path(context.params.pid_file)
        if pid_file.exists():
            return StepResult(data={"pid": os.getpid(), "first_pid": int(pid_file.read_text())})
        pid_file.write_text(str(os.getpid()))
        context.log("pid", {"pid": os.getpid()})
        context.cancellation.wait(BLOCK_SECONDS)
        context.check_cancelled()
        return StepResult()


class BlockOnceAction(ParamsAction[PidParams]):
    """A step that blocks the first time it runs; its runs resume after a crash."""

    name = "block_once"
    recovery = Recovery.resume

    def setup_steps(self, registry: StepRegistry[Any]) -> None:
        registry.register(Undoable())
        registry.register(BlockOnce())


class HungryAction(BaseAction[ActionParams]):
    """Declares more than the test cluster has: shown, never run."""

    name = "hungry"
    resources: ClassVar[dict[str, Any]] = {
        "num_cpus": 4, "num_gpus": 0.5, "memory": 2 * 1024**3, "resources": {"tpu": 1},
    }  # fmt: skip

    def setup_steps(self, registry: StepRegistry[Any]) -> None:
        registry.register(SyncWhere())


class GatedWhere(FileGated):
    """``FileGated``, saying where it ran."""

    def data(self) -> dict[str, Any]:
        return _where()


class GatedWhereAction(FileGateAction):
    """Steps a, b and c, which say where they ran; b waits for the file ``gate``."""

    name = "gated_where"
    step_class = GatedWhere


class ReleaseParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    release: str  # a path: the step "stall" waits until a file is there


class Where(Named):
    """Says where it ran."""

    def execute(self, context: Any) -> StepResult:
        return StepResult(data=_where())


class Stall(Where):
    """Logs its process id, then waits for the file ``release``, wherever it runs."""

    def execute(self, context: Any) -> StepResult:
        context.log("pid", {"pid": os.getpid()})
        wait_for_file(context, context.params.release)
        return StepResult(data=_where())


class StallAction(ParamsAction[ReleaseParams]):
    """Steps prepare, stall (until a file is there) and finish, each saying where it ran;
    its runs resume after a crash, running the step cut short again."""

    name = "stall"
    recovery = Recovery.resume

    def setup_steps(self, registry: StepRegistry[Any]) -> None:
        registry.register(Where("prepare"))
        registry.register(Stall("stall"))
        registry.register(Where("finish"))


class Hog(Where):
    """Waits for the file ``gate``, then says where it ran."""

    def execute(self, context: Any) -> StepResult:
        wait_for_file(context, context.params.gate)
        return StepResult(data=_where())


class HogAction(ParamsAction[FileGateParams]):
    """One step that needs three CPUs (of the tests' four): two of its runs cannot execute
    at once, the second waits in Ray's queue."""

    name = "hog"
    resources = Resources(num_cpus=3)

    def setup_steps(self, registry: StepRegistry[Any]) -> None:
        registry.register(Hog("hog"))


class LedgerParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ledger: str  # a file that every step execution appends its start and its end to
    hold: float = 0.005  # seconds each step takes between its start and its end


class Tally(Where):
    """Appends ``start`` and ``end`` records (run, step, process, time) to the ledger: one
    ``write`` each on a file opened for appending, so that the records of all processes
    land whole and in the order they were written."""

    def _record(self, context: Any, what: str) -> None:
        run_id = context.runtime_ctx.run_id
        line = f"{what} {run_id} {self.name} {os.getpid()} {time.monotonic_ns()}\n"
        descriptor = os.open(context.params.ledger, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        try:
            os.write(descriptor, line.encode())
        finally:
            os.close(descriptor)

    def execute(self, context: Any) -> StepResult:
        self._record(context, "start")
        context.cancellation.wait(context.params.hold)
        context.check_cancelled()
        self._record(context, "end")
        return StepResult()


class TallyAction(ParamsAction[LedgerParams]):
    """Three tiny steps (``hold`` seconds each) that keep a ledger of their executions."""

    name = "tally"

    def setup_steps(self, registry: StepRegistry[Any]) -> None:
        for name in ("s1", "s2", "s3"):
            registry.register(Tally(name))


class CappedTallyAction(TallyAction):
    """``tally``, two runs at a time across the cluster."""

    name = "tally_capped"
    max_concurrency = 2


PIPELINES = [
    MixedAction, WaitingAction, BlockOnceAction, HungryAction, GatedWhereAction, StallAction,
    HogAction, TallyAction, CappedTallyAction,
]  # fmt: skip
