"""The end of a run in words: what was rolled back, newest first, then the outcome, its
cause and the commands to type next.

::

    ↺ rollback, newest first
      ↺ validate    rolled back     0.1s
      ↺ initialize  rolled back     0.2s
    ✗ failed at step 'upload' after 14.1s · rollback done: 2 rolled back, 0 not supported, 0 failed
      cause  ConnectionError: bucket unreachable (HTTP 503), after 3 attempts
      next   stepline logs 01JDQ8A9ZC --step upload   ·   stepline show 01JDQ8A9ZC
"""

from __future__ import annotations

from collections import Counter

from rich.console import Console
from rich.text import Text

from stepline_client import Run, Step

from ._console import STYLES, Glyphs
from ._format import compact_json, elapsed, error_text, seconds
from .remote import Remote

__all__ = ["outcome_lines", "print_report", "rollback_lines", "rollback_steps"]

_UNDO_WORDS = {
    "rolled_back": "rolled back",
    "failed": "rollback failed",
    "not_supported": "not supported",
    "pending": "not rolled back yet",
    "running": "rolling back",
}


def rollback_steps(run: Run) -> list[Step]:
    """The steps the rollback dealt with, in the order it took them (newest first)."""
    return sorted(
        (s for s in run.steps if s.rollback.status != "not_needed"),
        key=lambda s: s.index,
        reverse=True,
    )


def _kept_steps(run: Run) -> list[Step]:
    """Steps that succeeded and were not undone although the run did not succeed: kept
    behind an irreversible step, or the cancel asked for no rollback."""
    if run.status == "succeeded":
        return []
    return [s for s in run.steps if s.status == "succeeded" and s.rollback.status == "not_needed"]


def rollback_lines(run: Run, glyphs: Glyphs) -> list[Text]:
    """The rollback block: one line per step in the order it was undone."""
    undone, kept = rollback_steps(run), _kept_steps(run)
    if not undone and not kept:
        return []
    width = max(len(s.name) for s in (*undone, *kept))
    lines = [Text(f"{glyphs.rolled_back} rollback, newest first", style=STYLES["rolled_back"])]
    for step in undone:
        status = step.rollback.status
        line = Text("  ")
        line.append(
            glyphs.status(status) if status != "failed" else glyphs.failed,
            STYLES.get(status, "red"),
        )
        line.append(f" {step.name:<{width}}  ")
        line.append(f"{_UNDO_WORDS.get(status, status):<15}", style=STYLES.get(status, "red"))
        took = elapsed(step.rollback.started_at, step.rollback.finished_at)
        if status == "not_supported":
            line.append("  (the step defines no rollback; nothing undone)", style="dim")
        elif status == "failed":
            line.append(f"  {error_text(step.rollback.error)}  (the remaining rollbacks still ran)")
        elif took is not None and status == "rolled_back":
            line.append(f"  {seconds(took)}")
        lines.append(line)
    for step in reversed(kept):
        line = Text(f"  {glyphs.skipped} {step.name:<{width}}  ", style="dim")
        line.append("kept           (not rolled back)", style="dim")
        lines.append(line)
    return lines


def _rollback_summary(run: Run) -> str:
    counts = Counter(s.rollback.status for s in rollback_steps(run))
    if not counts:
        return "nothing to roll back"
    done = ", ".join(
        f"{counts[k]} {w}"
        for k, w in (("rolled_back", "rolled back"), ("not_supported", "not supported"),
                     ("failed", "failed"))
    )  # fmt: skip
    unfinished = counts["pending"] + counts["running"]
    return f"rollback done: {done}" + (f", {unfinished} unfinished" if unfinished else "")


def _failed_step(run: Run) -> Step | None:
    name = run.error.step if run.error is not None else None
    named = next((s for s in run.steps if s.name == name), None)
    return named or next((s for s in run.steps if s.status in ("failed", "cancelled")), None)


def outcome_lines(run: Run, glyphs: Glyphs, remote: Remote) -> list[Text]:
    """The outcome line of a finished run, its cause and the next commands."""
    took = seconds(elapsed(run.started_at or run.created_at, run.finished_at))
    status = run.status
    style = STYLES.get(status, "")
    if status == "succeeded":
        line = Text(f"{glyphs.succeeded} succeeded in {took}", style=style)
        if run.result:
            line.append(f" {glyphs.dot} result {compact_json(run.result)}")
        return [line]
    step = _failed_step(run)
    where = f" at step '{step.name}'" if step is not None else ""
    if status == "cancelled" and step is None:
        where = " before it started"
    glyph = glyphs.failed if status == "failed" else glyphs.status(status)
    lines = [
        Text(f"{glyph} {status.replace('_', ' ')}{where} after {took} {glyphs.dot} ", style=style)
        + Text(_rollback_summary(run))
    ]
    cause = error_text(run.error) or (run.error.message if run.error else None)
    if cause:
        attempts = step.attempts if step is not None else 0
        if attempts > 1:
            cause += f", after {attempts} attempts"
        lines.append(Text("  cause  ", style="dim") + Text(cause))
    hints = [remote.command("show", run.id)]
    if step is not None and status == "failed":
        hints.insert(0, remote.command("logs", run.id, "--step", step.name))
    lines.append(Text("  next   ", style="dim") + Text(f"   {glyphs.dot}   ".join(hints)))
    return lines


def print_report(console: Console, run: Run, glyphs: Glyphs, remote: Remote) -> None:
    """The rollback block, then the outcome, as lines that are never wrapped."""
    for line in (*rollback_lines(run, glyphs), *outcome_lines(run, glyphs, remote)):
        console.print(line, soft_wrap=True)
