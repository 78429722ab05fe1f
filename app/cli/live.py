"""Following a run on a terminal: one line per step, redrawn in place, and an overall bar.

::

      ✓ dataset  20%  ━━━━━━━━━━━━━━━━━━━━  done            4.1s
      ⠹ train    60%  ━━━━━━━━━╸──────────   48%  0:00:31   eta 0:00:33
      · upload   20%  ────────────────────  pending
      run        ━━━━━━━━━━━━━━╸───────────────  48.8%  0:00:35   eta 0:00:40

Drawn on stderr at most ``REFRESH_PER_SECOND`` times a second, by rich's ``Live`` thread;
when the run ends the last frame stays, without bars. Rows are capped to the terminal's
height, keeping the running, failed and rolling-back steps.
"""

from __future__ import annotations

import threading

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from stepline_client import Event, Run, Step

from ._console import STYLES, Glyphs
from ._format import bar, clock, elapsed, error_text, percent, seconds, weight
from .state import RunState

__all__ = ["REFRESH_PER_SECOND", "LiveRenderer", "visible_steps"]

REFRESH_PER_SECOND = 10
_UNDO_WORDS = {
    "pending": "rollback pending",
    "running": "rolling back",
    "rolled_back": "rolled back",
    "failed": "rollback failed",
    "not_supported": "no rollback",
}
STEP_BAR = 20
RUN_BAR = 30
ETA_MIN_PROGRESS = 0.05  # an estimate from less than this is noise
ETA_MIN_SECONDS = 2.0
RESERVED_LINES = 3  # the overall line, the "more steps" line, the prompt


def _eta(spent: float | None, fraction: float) -> str:
    if spent is None or fraction < ETA_MIN_PROGRESS or spent < ETA_MIN_SECONDS or fraction >= 1:
        return ""
    return f"eta {clock(spent * (1 - fraction) / fraction)}"


def _label(word: str, width: int) -> str:
    # Under the step rows (glyph, name, weight), so that the bars start in one column.
    return f"{'':1}  {word:<{width + 6}}  "


def visible_steps(steps: list[Step], rows: int) -> tuple[list[Step], int]:
    """At most ``rows`` steps in pipeline order: those in play (running, failed, rolling
    back) first, then the ones nearest to them. Returns them and how many were left out."""
    if len(steps) <= rows:
        return steps, 0
    rows = max(1, rows)
    busy = [
        s for s in steps
        if s.status in ("running", "failed") or s.rollback.status in ("running", "failed")
    ]  # fmt: skip
    centre = (
        busy[0].index
        if busy
        else next((s.index for s in steps if s.status == "pending"), steps[-1].index)
    )
    order = busy + sorted((s for s in steps if s not in busy), key=lambda s: abs(s.index - centre))
    chosen = sorted(order[:rows], key=lambda s: s.index)
    return chosen, len(steps) - len(chosen)


class LiveRenderer:
    """Keeps the picture of the run and lets ``Live`` redraw it; ``event`` only updates it."""

    def __init__(self, console: Console, glyphs: Glyphs) -> None:
        self.console = console
        self.glyphs = glyphs
        self.state = RunState()
        self._lock = threading.Lock()
        self._spinners: dict[str, Spinner] = {}
        self._live = Live(
            console=console,
            get_renderable=self._render,
            refresh_per_second=REFRESH_PER_SECOND,
            transient=False,
            redirect_stdout=False,
            redirect_stderr=False,
        )

    def __enter__(self) -> LiveRenderer:
        self._live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._live.stop()

    def event(self, event: Event) -> None:
        with self._lock:
            self.state.apply(event)

    def finish(self, run: Run) -> None:
        with self._lock:
            self.state.run = run
        self._live.refresh()

    # -- drawing --------------------------------------------------------------------------

    def _render(self) -> RenderableType:
        with self._lock:
            run = self.state.run
            if run is None:
                return Text("waiting for the run's snapshot…", style="dim")
            height = self.console.size.height
            steps, hidden = visible_steps(run.steps, height - RESERVED_LINES)
            width = max((len(s.name) for s in run.steps), default=4)
            table = Table.grid(padding=(0, 2))
            for _ in range(6):
                table.add_column(no_wrap=True)
            for step in steps:
                table.add_row(*self._row(step, width, run.finished))
            parts: list[RenderableType] = [table]
            if hidden:
                parts.append(Text(f"  … {hidden} more steps", style="dim"))
            if not run.finished:
                parts.append(self._overall(run, width))
            return Group(*parts)

    def _glyph(self, step: Step) -> RenderableType:
        if step.status == "running" or step.rollback.status == "running":
            style = STYLES["rolled_back" if step.rollback.status == "running" else "running"]
            spinner = self._spinners.get(step.name)
            if spinner is None or spinner.style != style:
                kind = "dots" if self.glyphs.dot != "|" else "line"
                spinner = self._spinners[step.name] = Spinner(kind, style=style)
            return spinner
        status = step.status
        glyph = self.glyphs.failed if status == "failed" else self.glyphs.status(status)
        return Text(glyph, style=STYLES.get(status, ""))

    def _row(self, step: Step, width: int, finished: bool) -> list[RenderableType]:
        g = self.glyphs
        name = Text(f"{step.name:<{width}}")
        share = Text(f"{weight(step.weight):>4}", style="dim")
        spent = (
            step.duration_seconds
            if step.duration_seconds is not None
            else elapsed(step.started_at, step.finished_at)
        )
        state = self._state_words(step, finished)
        if finished:
            return [self._glyph(step), name, share, Text(seconds(spent)), state, Text("")]
        fraction = step.progress if step.status != "pending" else 0.0
        style = STYLES.get(step.status, "cyan")
        shown = bar(fraction, STEP_BAR, g, style=style)
        if step.status == "running":
            when = Text(f"{percent(step.progress):>6}  {clock(spent or 0)}")
            return [self._glyph(step), name, share, shown, when, Text(_eta(spent, step.progress))]
        return [self._glyph(step), name, share, shown, state, Text(seconds(spent) if spent else "")]

    @staticmethod
    def _state_words(step: Step, finished: bool) -> Text:
        if step.status == "failed":
            attempts = f"attempt {step.attempts}  " if step.attempts > 1 else ""
            text = Text(f"failed  {attempts}{error_text(step.error)}", style=STYLES["failed"])
        elif step.status == "pending":
            text = Text("not run" if finished else "pending", style=STYLES["pending"])
        else:
            words = "done" if step.status == "succeeded" else step.status.replace("_", " ")
            text = Text(words, style=STYLES.get(step.status, ""))
        undo = step.rollback.status
        if undo != "not_needed" and not finished:  # once finished, the report tells it
            words = _UNDO_WORDS.get(undo, undo)
            if undo == "failed":
                words += f": {error_text(step.rollback.error)}"
            text.append("  ")
            text.append(words, style=STYLES.get(undo, "red"))
        return text

    def _overall(self, run: Run, width: int) -> Text:
        g = self.glyphs
        spent = elapsed(run.started_at, None) if run.started_at else None
        if run.status in ("rolling_back", "cancelling") and run.rollback_progress is not None:
            line = Text(_label("rollback", width))
            line.append_text(bar(run.rollback_progress, RUN_BAR, g, style=STYLES["rolled_back"]))
            line.append(f"  {percent(run.rollback_progress):>6}  {run.status.replace('_', ' ')}")
            return line
        line = Text(_label("run", width))
        line.append_text(bar(run.progress, RUN_BAR, g))
        line.append(f"  {percent(run.progress):>6}  {clock(spent or 0)}")
        eta = _eta(spent, run.progress)
        if eta:
            line.append(f"   {eta}")
        if run.status != "running":
            line.append(f"  {run.status.replace('_', ' ')}", style=STYLES.get(run.status, ""))
        return line
