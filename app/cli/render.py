"""Tables and summaries of what the API returns: runs, one run, pipelines.

Tables have a header row and no borders (like ``kubectl get``), so that they read in a
terminal and split on whitespace in a script; ``--json`` is there for scripts that need
more than that.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.segment import Segment, Segments
from rich.table import Table
from rich.text import Text

from stepline_client import Pipeline, Run

from ._console import STYLES, Glyphs
from ._format import ago, compact_json, elapsed, error_text, percent, seconds, status_text, utc
from ._format import weight as weight_text
from .remote import Remote
from .report import print_report
from .state import RunState

__all__ = ["pipeline_details", "pipelines_table", "print_table", "run_details", "runs_table"]


def _table(*headers: str) -> Table:
    table = Table(box=None, padding=(0, 2, 0, 0), show_edge=False, header_style="bold")
    for header in headers:
        table.add_column(header, no_wrap=True)
    return table


def print_table(console: Console, table: Table) -> None:
    """Print ``table`` without the spaces rich pads its last column with."""
    for line in console.render_lines(table, console.options, pad=False):
        while line and not line[-1].text.strip():
            line.pop()
        if line:
            line[-1] = Segment(line[-1].text.rstrip(), line[-1].style)
        console.print(Segments([*line, Segment.line()]), end="", soft_wrap=True)


def _labels(labels: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or "-"


def _duration(run: Run) -> str:
    return seconds(elapsed(run.started_at, run.finished_at))


def runs_table(runs: list[Run], glyphs: Glyphs) -> Table:
    """One row per run: status, id, pipeline, progress, current step, created, duration."""
    table = _table("STATUS", "ID", "PIPELINE", "PROGRESS", "STEP", "CREATED", "DURATION", "LABELS")
    for run in runs:
        step = RunState(run).current()
        table.add_row(
            status_text(run.status, glyphs.status(run.status)),
            run.id,
            run.pipeline,
            percent(run.progress),
            step.name if step is not None else "-",
            utc(run.created_at),
            _duration(run),
            _labels(run.labels),
        )
    return table


def _steps_table(run: Run, glyphs: Glyphs) -> Table:
    table = _table("#", "STEP", "WEIGHT", "STATUS", "PROGRESS", "ATTEMPTS", "DURATION", "ROLLBACK")
    for step in run.steps:
        undo = step.rollback.status
        table.add_row(
            str(step.index + 1),
            step.name,
            weight_text(step.weight),
            status_text(step.status, glyphs.status(step.status)),
            percent(step.progress),
            str(step.attempts),
            seconds(
                step.duration_seconds
                if step.duration_seconds is not None
                else elapsed(step.started_at, step.finished_at)
            ),
            Text(undo.replace("_", " ") if undo != "not_needed" else "-", STYLES.get(undo, "")),
        )
    return table


def run_details(
    console: Console, run: Run, glyphs: Glyphs, remote: Remote, traceback: bool = False
) -> None:
    """``stepline show``: the header, the steps with their rollback, then the outcome (or
    how to follow a run still going)."""
    head = status_text(run.status, glyphs.status(run.status))
    head.append(f"  {run.pipeline} {glyphs.dot} {run.id}", style="bold")
    console.print(head, soft_wrap=True)
    times = f"created {utc(run.created_at)} ({ago(run.created_at)})"
    if run.started_at:
        times += f" {glyphs.dot} started {utc(run.started_at)}"
    if run.finished_at:
        times += f" {glyphs.dot} finished {utc(run.finished_at)} {glyphs.dot} took {_duration(run)}"
    rows = [
        ("time", times),
        ("progress", percent(run.progress)),
        ("labels", _labels(run.labels)),
        ("params", compact_json(run.params)),
        ("page", remote.run_url(run.id)),
    ]
    for key, value in rows:
        console.print(Text(f"  {key:<9}", style="dim") + Text(value), soft_wrap=True)
    console.print()
    print_table(console, _steps_table(run, glyphs))
    failed = [s for s in run.steps if s.status == "failed" and s.error is not None]
    for step in failed:
        console.print()
        console.print(
            Text(f"{glyphs.failed} {step.name}: {error_text(step.error)}", STYLES["failed"]),
            soft_wrap=True,
        )
        if step.error is not None and step.error.traceback:
            if traceback:
                console.print(Text(step.error.traceback.rstrip(), style="dim"), soft_wrap=True)
            else:
                console.print(Text("  (--traceback shows where it was raised)", style="dim"))
    console.print()
    if run.finished:
        print_report(console, run, glyphs, remote)
    else:
        console.print(Text(f"follow it: {remote.command('watch', run.id)}"), soft_wrap=True)


def pipelines_table(pipelines: list[Pipeline]) -> Table:
    table = _table("NAME", "STEPS", "TITLE")
    for pipeline in pipelines:
        table.add_row(
            pipeline.name,
            " → ".join(s.name for s in pipeline.steps),
            pipeline.title or pipeline.description,
        )
    return table


def _undo(step: Any) -> str:
    if step.irreversible:
        return "pivot (irreversible)"
    return "undo" if step.can_rollback else "nothing to undo"


def _retry(step: Any) -> str:
    attempts = (step.retry or {}).get("max_attempts")
    return f"{attempts} attempts" if isinstance(attempts, int) and attempts > 1 else "-"


def _param_rows(schema: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    required = set(schema.get("required") or [])
    rows = []
    for name, spec in (schema.get("properties") or {}).items():
        kind = spec.get("type") or " | ".join(
            str(option.get("type", "?")) for option in spec.get("anyOf", [])
        ) or "any"  # fmt: skip
        if name in required:
            default = "(required)"
        else:
            default = compact_json(spec["default"]) if "default" in spec else "-"
        rows.append((name, str(kind), default, spec.get("description", "")))
    return rows


def pipeline_details(console: Console, pipeline: Pipeline, remote: Remote) -> None:
    """``stepline pipelines NAME``: the steps with weights and rollback, then the params."""
    console.print(Text(pipeline.name, style="bold") + Text(f"  {pipeline.title}"), soft_wrap=True)
    if pipeline.description:
        console.print(Text(f"  {pipeline.description}"), soft_wrap=True)
    if pipeline.recovery:
        console.print(Text(f"  after a crash: {pipeline.recovery}", style="dim"), soft_wrap=True)
    console.print()
    steps = _table("#", "STEP", "WEIGHT", "ROLLBACK", "RETRY", "TIMEOUT")
    for index, step in enumerate(pipeline.steps, 1):
        timeout = seconds(step.timeout_seconds) if step.timeout_seconds else "-"
        steps.add_row(
            str(index), step.name, weight_text(step.weight), _undo(step), _retry(step), timeout
        )
    print_table(console, steps)
    console.print()
    rows = _param_rows(pipeline.params_schema)
    if rows:
        params = _table("PARAM", "TYPE", "DEFAULT", "DESCRIPTION")
        for row in rows:
            params.add_row(*row)
        print_table(console, params)
    else:
        console.print(Text("no parameters", style="dim"))
    console.print()
    console.print(
        Text(f"start it: {remote.command('run', pipeline.name, '-p', 'key=value')}", style="dim"),
        soft_wrap=True,
    )
