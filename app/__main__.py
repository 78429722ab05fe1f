"""``python -m app [pipeline]``: run a demo pipeline in the terminal with a progress bar."""

from __future__ import annotations

import argparse
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app", description=__doc__)
    parser.add_argument("pipeline", nargs="?", default="train", choices=sorted(DEMOS))
    parser.add_argument("--step-seconds", type=float, default=1.0)
    args = parser.parse_args(argv)
    action = DEMOS[args.pipeline]({"step_seconds": args.step_seconds})
    orchestrator = action.orchestrator(observers=[ProgressBar(sys.stdout)])
    try:
        print(orchestrator.execute())
    except OrchestrationError as exc:
        print(f"{type(exc).__name__}: {exc}")
        print(exc.report.summary())
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
