"""``stepline demo [pipeline]``: run a demo pipeline in the terminal with a progress bar."""

from __future__ import annotations

import sys
from typing import TextIO

from app.pipelines.demos import FlakyAction, TrainAction, UploadAction
from steps import BaseAction, EventType, OrchestrationError, StepEvent

DEMOS: dict[str, type[BaseAction]] = {  # type: ignore[type-arg]
    "upload": UploadAction,
    "train": TrainAction,
    "flaky": FlakyAction,
}
BAR_WIDTH = 30


class ProgressBar:
    """Draws the run's weighted progress and narrates rollback, one line per transition."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.live = out.isatty()

    def on_event(self, event: StepEvent) -> None:
        filled = int(event.progress * BAR_WIDTH)
        bar = "#" * filled + "." * (BAR_WIDTH - filled)
        line = f"[{bar}] {event.progress * 100:5.1f}%  {event.type.value:<24} {event.step or ''}"
        if event.type is EventType.step_progress and self.live:
            self.out.write("\r" + line)
        elif event.type is not EventType.step_progress:
            self.out.write(("\r" if self.live else "") + line + "\n")
        self.out.flush()


def run_demo(pipeline: str, step_seconds: float) -> int:
    """Run demo ``pipeline`` here, drawing its progress; 1 if it did not succeed."""
    action = DEMOS[pipeline]({"step_seconds": step_seconds})
    orchestrator = action.orchestrator(observers=[ProgressBar(sys.stdout)])
    try:
        print(orchestrator.execute())
    except OrchestrationError as exc:
        print(f"{type(exc).__name__}: {exc}")
        print(exc.report.summary())
        return 1
    return 0
