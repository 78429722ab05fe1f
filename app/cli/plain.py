"""Following a run without a terminal: one timestamped line per transition, on stderr.

::

    2026-11-29T02:19:57Z  ✓ prepare    succeeded in 0.3s · run 30.0%
    2026-11-29T02:19:57Z  ▶ transform  started (2/3, weight 30%)

Progress is reported at most every ``PROGRESS_SECONDS``; log lines are not transitions
(``stepline logs -f`` follows them).
"""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.text import Text

from stepline_client import Event, Run

from ._console import STYLES, Glyphs
from ._format import error_text, iso, parse_time, percent, seconds, weight
from .state import RunState

__all__ = ["PROGRESS_SECONDS", "PlainRenderer"]

PROGRESS_SECONDS = 10.0
# Transitions told in a fixed form: the status whose glyph and style they take, the words.
_STEP_WORDS = {
    "step.skipped": ("skipped", "skipped"),
    "step.cancelled": ("cancelled", "cancelled"),
    "step.rollback_started": ("rolled_back", "rolling back"),
    "step.rolled_back": ("rolled_back", "rolled back"),
    "step.rollback_not_supported": ("not_supported", "rollback not supported"),
}


class PlainRenderer:
    """Writes each transition as it arrives; nothing is redrawn."""

    def __init__(self, console: Console, glyphs: Glyphs) -> None:
        self.console = console
        self.glyphs = glyphs
        self.state = RunState()
        self._width = 0
        self._progress_at = time.monotonic()

    def __enter__(self) -> PlainRenderer:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def event(self, event: Event) -> None:
        step = self.state.apply(event)
        run = self.state.run
        if run is None:
            return
        if event.type == "run.snapshot":
            self._width = max((len(s.name) for s in run.steps), default=0)
        data: dict[str, Any] = event.data if isinstance(event.data, dict) else {}
        text = self._line(event.type, data, run, step.name if step is not None else None)
        if text is None:
            return
        when = parse_time(data.get("time")) or parse_time(data.get("updated_at"))
        line = Text(f"{iso(when)}  ", style="dim") + text
        self.console.print(line, soft_wrap=True)

    def _step(self, glyph: str, name: str | None, words: str, style: str = "") -> Text:
        return Text(f"{glyph} {name or '?':<{self._width}}  {words}", style=style)

    def _line(self, kind: str, data: dict[str, Any], run: Run, name: str | None) -> Text | None:
        g, step, at = self.glyphs, self.state.step(name), percent(run.progress)
        error = error_text(data.get("error"))
        attempt = data.get("attempt")
        if kind == "run.snapshot":
            return self._attached(run)
        if kind == "step.progress":
            if time.monotonic() - self._progress_at < PROGRESS_SECONDS:
                return None
            self._progress_at = time.monotonic()
            inner = percent(step.progress if step is not None else None)
            return self._step(g.progress, name, f"{inner} {g.dot} run {at}")
        if kind == "step.started":
            again = f", attempt {attempt}" if isinstance(attempt, int) and attempt > 1 else ""
            where = (
                f"{step.index + 1}/{len(run.steps)}, weight {weight(step.weight)}" if step else ""
            )
            return self._step(g.running, name, f"started ({where}{again})", STYLES["running"])
        if kind == "step.retrying":
            delay = data.get("delay")
            after = f"; retrying in {seconds(delay)}" if isinstance(delay, int | float) else ""
            return self._step(
                g.retrying, name, f"attempt {attempt} failed: {error}{after}", "yellow"
            )
        if kind == "step.succeeded":
            took = seconds(data.get("duration_seconds"))
            return self._step(g.succeeded, name, f"succeeded in {took} {g.dot} run {at}", "green")
        if kind == "step.rollback_failed":
            return self._step(g.failed, name, f"rollback failed: {error}", STYLES["failed"])
        if kind == "step.failed":
            return self._step(g.failed, name, f"failed: {error}", STYLES["failed"])
        if kind in _STEP_WORDS:
            status, words = _STEP_WORDS[kind]
            return self._step(g.status(status), name, words, STYLES[status])
        if kind == "run.cancelling":
            return Text(f"{g.cancelled} cancel requested", style=STYLES["cancelling"])
        if kind == "run.rollback_started":
            return self._rollback_started(data)
        if kind in ("run.succeeded", "run.failed", "run.cancelled"):
            status = kind.removeprefix("run.")
            glyph = g.failed if status == "failed" else g.status(status)
            return Text(f"{glyph} run {status} {g.dot} {at}", style=STYLES[status])
        if kind in ("run.queued", "run.started"):
            return Text(f"{g.dot} run {kind.removeprefix('run.')}")
        if kind == "step.log":
            return None
        return Text(f"{g.dot} {kind}" + (f" {name}" if name else ""))  # from a newer server

    def _attached(self, run: Run) -> Text:
        g = self.glyphs
        text = Text(
            f"{g.dot} run {run.id} ({run.pipeline}) {run.status} {g.dot} {percent(run.progress)}"
        )
        current = self.state.current()
        if current is not None and not run.finished:
            text.append(f" {g.dot} step {current.index + 1}/{len(run.steps)} {current.name}")
        return text

    def _rollback_started(self, data: dict[str, Any]) -> Text:
        g = self.glyphs
        planned = list(data.get("steps") or [])
        nothing = list(data.get("not_supported") or [])
        why = data.get("reason") or "failed"
        text = Text(
            f"{g.rolled_back} rolling back ({why}), newest first: ", style=STYLES["rolled_back"]
        )
        text.append(", ".join(planned) or "nothing to undo")
        if nothing:
            text.append(f"; no rollback defined: {', '.join(nothing)}", style="dim")
        if data.get("pivot"):
            text.append(f"; kept behind irreversible step {data['pivot']}", style="dim")
        return text

    def finish(self, run: Run) -> None:
        return None
