"""Pipelines the service tests drive: steps that fail, wait or talk on request."""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from steps import (
    ActionParams,
    BaseAction,
    BaseStep,
    BaseStepContext,
    Recovery,
    StepRegistry,
    StepResult,
)

GATE_TIMEOUT = 30.0
GATE_POLL = 0.01  # seconds between two looks at a gate (and at the run's cancel)
# A directory shared by the processes of a test session (the tests', Ray workers'): a gate
# is also a file there, so that a step waits at it wherever the run executes.
GATES_DIRECTORY = "STEPLINE_TEST_GATES"
_GATE_NAME = re.compile(r"[A-Za-z0-9_.-]+")


class _Flag:
    """Set in this process (a ``threading.Event``) or in any other (a file)."""

    def __init__(self, event: threading.Event, path: Path | None) -> None:
        self._event, self._path = event, path

    def set(self) -> None:
        if self._path is not None:
            self._path.touch()
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set() or (self._path is not None and self._path.exists())

    def wait(self, timeout: float) -> bool:
        """Whether the flag was set within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not self.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            # Wakes at once when set in this process; looks for the file between waits.
            self._event.wait(min(GATE_POLL, remaining))
        return True


class Gates:
    """Named gates that steps wait at until a test opens them.

    Thread-safe within a process; across processes when ``STEPLINE_TEST_GATES`` names a
    directory that they share (the tests set it before they start Ray or servers).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._gates: dict[str, threading.Event] = {}
        self._reached: dict[str, threading.Event] = {}

    def _get(self, table: dict[str, threading.Event], name: str, suffix: str) -> _Flag:
        if not _GATE_NAME.fullmatch(name):
            raise ValueError(f"gate names are letters, digits, '_', '.' and '-': {name!r}")
        with self._lock:
            event = table.setdefault(name, threading.Event())
        directory = os.environ.get(GATES_DIRECTORY)
        return _Flag(event, Path(directory) / f"{name}.{suffix}" if directory else None)

    def open(self, name: str) -> None:
        self._get(self._gates, name, "open").set()

    def reached(self, name: str) -> _Flag:
        """Set once a step is waiting at gate ``name``."""
        return self._get(self._reached, name, "reached")

    def wait(self, name: str, context: BaseStepContext) -> None:
        self.reached(name).set()
        gate = self._get(self._gates, name, "open")
        deadline = time.monotonic() + GATE_TIMEOUT
        while not gate.wait(GATE_POLL):
            context.check_cancelled()
            if time.monotonic() > deadline:
                raise TimeoutError(f"gate {name!r} was never opened")
        # A cancel that came before the gate opened wins, whatever the timing of the wait.
        context.check_cancelled()


GATES = Gates()


class ControlledParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    fail_at: str | None = None
    undo_fails: list[str] = Field(default_factory=list)
    gate_at: str | None = None
    gate: str = "gate"
    logs: int = 0
    progress_calls: int = 0


class Named(BaseStep[Any]):
    """A step whose name and weight are given when it is made."""

    def __init__(self, name: str, weight: float = 1.0) -> None:
        self._name, self._weight = name, weight

    @property
    def name(self) -> str:
        return self._name

    @property
    def progress_weight(self) -> float:
        return self._weight


class Controlled(Named):
    def execute(self, context: Any) -> StepResult:
        params: ControlledParams = context.params
        for i in range(params.logs):
            context.log("line", {"n": i})
        for i in range(1, params.progress_calls + 1):
            context.set_progress(i, params.progress_calls)
        if params.gate_at == self.name:
            GATES.wait(params.gate, context)
        if params.fail_at == self.name:
            raise RuntimeError(f"{self.name} failed on purpose")
        return StepResult(data={"done": self.name})

    def rollback(self, context: Any, result: StepResult) -> None:
        if self.name in context.params.undo_fails:
            raise OSError(f"cannot undo {self.name}")


P = TypeVar("P", bound=BaseModel)


class ParamsAction(BaseAction[P]):
    """An action whose steps read its params from their context (``context.params``)."""

    def create_context(self) -> BaseStepContext:
        context = BaseStepContext(self.runtime_ctx)
        context.params = self.params  # type: ignore[attr-defined]
        return context


class ControlledAction(ParamsAction[ControlledParams]):
    """Three steps a (0.2), b (0.5), c (0.3) that fail, wait or talk when asked."""

    name = "controlled"

    def setup_steps(self, registry: StepRegistry[Any]) -> None:
        for name, weight in (("a", 0.2), ("b", 0.5), ("c", 0.3)):
            registry.register(Controlled(name, weight))


class Noop(Named):
    def execute(self, context: Any) -> StepResult:
        return StepResult()


NOOP_10 = [Noop(f"step{i}") for i in range(1, 11)]


class SerialAction(ControlledAction):
    """The controlled steps, one run at a time."""

    name = "serial"
    max_concurrency = 1


PIPELINES = [ControlledAction, SerialAction]


@dataclass
class Collected(BaseStepContext):
    items: list[str] = field(default_factory=list)
    count: int = 0
    note: Any = None


class CollectParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    unserialisable: bool = False


class Collect(BaseStep[Collected]):
    name = "collect"
    progress_weight = 1.0

    def execute(self, context: Collected) -> StepResult:
        context.items.extend(["x", "y"])
        return StepResult(data={"added": 2}, rollback_data={"remove": ["x", "y"]})

    def rollback(self, context: Collected, result: StepResult) -> None:
        context.items.clear()


class Count(BaseStep[Collected]):
    name = "count"
    progress_weight = 1.0

    def execute(self, context: Collected) -> StepResult:
        context.count = len(context.items)
        if context.params["unserialisable"]:  # type: ignore[attr-defined]
            context.note = threading.Event()
        return StepResult(data={"count": context.count})


class CollectAction(BaseAction[CollectParams]):
    """Two steps that fill a context with fields of its own."""

    name = "collect"

    def create_context(self) -> BaseStepContext:
        context = Collected(self.runtime_ctx)
        context.params = self.params.model_dump()  # type: ignore[attr-defined]
        return context

    def setup_steps(self, registry: StepRegistry[Any]) -> None:
        registry.register(Collect())
        registry.register(Count())


PIPELINES.append(CollectAction)


class ResumableAction(ControlledAction):
    """``controlled`` whose steps are idempotent: an interrupted run resumes."""

    name = "resumable"
    recovery = Recovery.resume


PIPELINES.append(ResumableAction)


class LedgerParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ledger: str
    step_seconds: float = 0.1
    fail_at: str | None = None
    undo_seconds: float = 0.0


class Ledgered(Named):
    """Writes what it does and undoes to a ledger file, one line each, flushed at once."""

    def _write(self, context: Any, what: str) -> None:
        with open(context.params["ledger"], "a", encoding="utf-8") as ledger:
            ledger.write(f"{what} {context.runtime_ctx.run_id} {self.name}\n")
            ledger.flush()

    def execute(self, context: Any) -> StepResult:
        self._write(context, "do")
        context.cancellation.wait(context.params["step_seconds"])
        context.check_cancelled()
        if context.params["fail_at"] == self.name:
            raise RuntimeError(f"{self.name} failed on purpose")
        return StepResult()

    def rollback(self, context: Any, result: StepResult) -> None:
        # The undo is written once it is complete: an undo cut short by a crash leaves no
        # line, and the one that recovery runs again writes it.
        threading.Event().wait(context.params["undo_seconds"])
        self._write(context, "undo")


class LedgerAction(BaseAction[LedgerParams]):
    """Three steps that take a moment and keep a ledger of their effects."""

    name = "ledger"

    def create_context(self) -> BaseStepContext:
        context = BaseStepContext(self.runtime_ctx)
        context.params = self.params.model_dump()  # type: ignore[attr-defined]
        return context

    def setup_steps(self, registry: StepRegistry[Any]) -> None:
        for name in ("s1", "s2", "s3"):
            registry.register(Ledgered(name))


PIPELINES.append(LedgerAction)


class Suicide(BaseStep[Any]):
    """Kills its own process, every time it runs."""

    name = "suicide"
    progress_weight = 1.0

    def execute(self, context: Any) -> StepResult:
        os.kill(os.getpid(), signal.SIGKILL)
        return StepResult()  # never reached


class SuicideAction(BaseAction[ActionParams]):
    """A pipeline whose step stops the process whenever it runs; it resumes on recovery."""

    name = "suicide"
    recovery = Recovery.resume

    def setup_steps(self, registry: StepRegistry[Any]) -> None:
        registry.register(Suicide())


PIPELINES.append(SuicideAction)


# The benchmarks load the two pipelines below by path; they are not in PIPELINES.


class FloodParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    calls: int = Field(0, ge=0)
    report: Literal["set_progress", "empty_method", "none"] = "set_progress"


class _EmptyProgress:
    """A context whose ``set_progress`` does nothing: the cheapest report a method allows."""

    def set_progress(self, current: float, total: float | None = None) -> None:
        pass


class Flood(BaseStep[Any]):
    """Counts to ``calls``, calling ``set_progress`` at each count: the context's, an empty
    method's, or (``none``) nothing, in the same loop."""

    name = "flood"
    progress_weight = 1.0

    def execute(self, context: Any) -> StepResult:
        params: FloodParams = context.params
        calls, report = params.calls, params.report != "none"
        target = context if params.report == "set_progress" else _EmptyProgress()
        for i in range(1, calls + 1):
            if report:
                target.set_progress(i, calls)
        return StepResult(data={"calls": calls, "reported": params.report})


class FloodAction(ParamsAction[FloodParams]):
    """One step that floods the run with progress reports."""

    name = "flood"

    def setup_steps(self, registry: StepRegistry[Any]) -> None:
        registry.register(Flood())


class PacedParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ticks: int = Field(0, ge=0)
    interval: float = Field(1.0, gt=0)


class Paced(BaseStep[Any]):
    """Reports progress ``ticks`` times, ``interval`` seconds apart: one event each."""

    name = "paced"
    progress_weight = 1.0

    def execute(self, context: Any) -> StepResult:
        params: PacedParams = context.params
        for i in range(1, params.ticks + 1):
            context.cancellation.wait(params.interval)
            context.check_cancelled()
            context.set_progress(i, params.ticks)
        return StepResult()


class PacedAction(ParamsAction[PacedParams]):
    """One step that makes an event every ``interval`` seconds."""

    name = "paced"

    def setup_steps(self, registry: StepRegistry[Any]) -> None:
        registry.register(Paced())


# Loaded by path by the tests of several server processes (not in PIPELINES): a test cannot
# open an in-process gate of another process, but it can create a file.


def wait_for_file(context: Any, path: str, timeout: float = GATE_TIMEOUT) -> None:
    """Until the file ``path`` exists: a gate another process opens by creating it. A
    cancel of the run ends the wait; so does ``timeout``, with an error."""
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        context.cancellation.wait(GATE_POLL)
        context.check_cancelled()
        if time.monotonic() > deadline:
            raise TimeoutError(f"gate {path!r} was never opened")


class FileGateParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    gate: str  # a path: step b waits until a file is there
    logs: int = 0


class FileGated(Named):
    def execute(self, context: Any) -> StepResult:
        params: FileGateParams = context.params
        for i in range(params.logs):
            context.log("line", {"n": i})
        if self.name == "b":
            wait_for_file(context, params.gate)
        return StepResult(data=self.data())

    def data(self) -> dict[str, Any]:
        return {"done": self.name}


class FileGateAction(ParamsAction[FileGateParams]):
    """Three steps a, b, c, each writing ``logs`` lines; b waits for the file ``gate``."""

    name = "file_gate"
    step_class: ClassVar[type[FileGated]] = FileGated

    def setup_steps(self, registry: StepRegistry[Any]) -> None:
        for name in ("a", "b", "c"):
            registry.register(self.step_class(name))
