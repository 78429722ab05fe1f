"""A run as its event stream tells it: the ``run.snapshot``, then every delta applied.

The follow renderers draw from this; the final report is drawn from ``GET /runs/{id}``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from stepline_client import Event, Run, Step
from stepline_client.models import ErrorInfo

from ._format import parse_time

__all__ = ["RunState"]

_STEP_STATUS = {
    "step.succeeded": "succeeded",
    "step.failed": "failed",
    "step.skipped": "skipped",
    "step.cancelled": "cancelled",
}
_ROLLBACK_STATUS = {
    "step.rollback_started": "running",
    "step.rolled_back": "rolled_back",
    "step.rollback_failed": "failed",
    "step.rollback_not_supported": "not_supported",
}
_RUN_END = {"run.succeeded", "run.failed", "run.cancelled"}


def _error(value: Any) -> ErrorInfo | None:
    return ErrorInfo.model_validate(value) if isinstance(value, dict) else None


class RunState:
    """The latest picture of one run; ``apply`` each event of its stream in order."""

    def __init__(self, run: Run | None = None) -> None:
        self.run = run
        self.last_seq = run.last_event_id if run is not None else 0

    @property
    def status(self) -> str:
        return self.run.status if self.run is not None else "unknown"

    def step(self, name: str | None) -> Step | None:
        if self.run is None or name is None:
            return None
        return next((s for s in self.run.steps if s.name == name), None)

    def current(self) -> Step | None:
        """The step being executed or rolled back, else the last one that started."""
        if self.run is None:
            return None
        for step in self.run.steps:
            if step.status == "running" or step.rollback.status == "running":
                return step
        started = [s for s in self.run.steps if s.status != "pending"]
        return started[-1] if started else None

    def apply(self, event: Event) -> Step | None:
        """Update the picture; returns the step the event is about, if any."""
        if event.seq is not None:
            self.last_seq = max(self.last_seq, event.seq)
        data: dict[str, Any] = event.data if isinstance(event.data, dict) else {}
        if event.type == "run.snapshot":
            self.run = Run.model_validate(data)
            return None
        run = self.run
        if run is None:
            return None
        if isinstance(data.get("status"), str):
            run.status = data["status"]
        if isinstance(data.get("progress"), int | float):
            run.progress = float(data["progress"])
        if isinstance(data.get("rollback_progress"), int | float):
            run.rollback_progress = float(data["rollback_progress"])
        when = parse_time(data.get("time"))
        step = self.step(data.get("step"))
        if event.type.startswith("run."):
            self._run_event(run, event.type, data, when)
        elif step is not None:
            self._step_event(step, event.type, data, when)
        return step

    def _run_event(self, run: Run, kind: str, data: dict[str, Any], when: datetime | None) -> None:
        if kind == "run.started":
            run.started_at = run.started_at or when
        elif kind == "run.cancelling":
            run.cancel_requested = True
        elif kind == "run.rollback_started":
            for name, status in [
                *((n, "pending") for n in data.get("steps") or []),
                *((n, "not_supported") for n in data.get("not_supported") or []),
            ]:
                step = self.step(name)
                if step is not None:
                    step.rollback.status = status
        elif kind in _RUN_END:
            run.finished_at = run.finished_at or when
            run.summary = data.get("summary", run.summary)
            run.error = _error(data.get("error")) or run.error
            if isinstance(data.get("result"), dict):
                run.result = data["result"]

    @staticmethod
    def _step_event(step: Step, kind: str, data: dict[str, Any], when: datetime | None) -> None:
        attempt = data.get("attempt")
        if kind == "step.started":
            step.status, step.progress = "running", 0.0
            if isinstance(attempt, int):
                step.attempts = attempt
            if step.started_at is None or attempt == 1:
                step.started_at = when
        elif kind == "step.progress" and isinstance(data.get("step_progress"), int | float):
            step.progress = float(data["step_progress"])
        elif kind == "step.retrying":
            step.error = _error(data.get("error"))
        elif kind in _STEP_STATUS:
            step.status = _STEP_STATUS[kind]
            step.finished_at = when
            if kind in ("step.succeeded", "step.skipped"):
                step.progress, step.error = 1.0, None
            if isinstance(data.get("duration_seconds"), int | float):
                step.duration_seconds = float(data["duration_seconds"])
            if kind == "step.failed":
                step.error = _error(data.get("error"))
        elif kind in _ROLLBACK_STATUS:
            step.rollback.status = _ROLLBACK_STATUS[kind]
            if kind == "step.rollback_started":
                step.rollback.started_at = when
            else:
                step.rollback.finished_at = when
            if kind == "step.rollback_failed":
                step.rollback.error = _error(data.get("error"))
