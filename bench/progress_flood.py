"""A step that reports progress a million times, run through the service (a by-hand benchmark).

What is measured: ``stepline serve`` (``python -m app serve``, default settings) on a fresh
SQLite file in a temporary directory, with the ``flood`` test pipeline: one step that
counts to ``--calls`` (1,000,000), calling ``context.set_progress(i, calls)`` at each count.
It is a sync step, so it runs in a worker thread and every report crosses to the event loop,
where the run's recorder keeps at most ``progress_per_second`` (10) progress events per
second and run. Baseline, on the same server in the same repetition: the same step with
``report`` off, counting as far without reporting. The floor, likewise: the same loop
calling the ``set_progress`` of an object whose method does nothing, the cheapest report
any method could be. ``empty method / not`` says how close to the baseline any report could
come; the per-call costs (the step's time less the baseline's, per call) say what
Stepline's report adds to the empty method. Each run is ``POST /runs`` and then
``GET /runs/{id}/events`` with ``Last-Event-ID: 0`` (every event of the run) until the
terminal event; reported per run: the time from the POST to the terminal event, the step's
own ``duration_seconds`` (from its ``step.succeeded`` event), and how many ``step.progress``
events were stored.

Targets: the flooding run takes less than ``RATIO_TARGET`` times as long as the baseline
(ratio per repetition, then its median), and the progress events stored stay within the
rate limit: at most ``progress_per_second`` per second of the step, plus one.

Run from the project root::

    .venv/bin/python bench/progress_flood.py [--reps N] [--calls N] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
from _harness import (
    Row,
    Summary,
    Verdict,
    median_ratio,
    print_report,
    run_async,
    serving,
    stepline,
    summary_of,
    to_row,
)

from app.settings import Settings

PIPELINES = ("tests.app.pipelines:FloodAction",)
DEFAULT_CALLS = 1_000_000
WARMUP_CALLS = 10_000
DEFAULT_REPS = 3
RATIO_TARGET = 2.0
RUN_TIMEOUT_S = 180.0
PROGRESS_PER_SECOND = Settings().progress_per_second
TERMINAL_EVENTS = frozenset({"run.succeeded", "run.failed", "run.cancelled"})


@dataclass(frozen=True)
class Run:
    """One run, as its client saw it."""

    seconds: float
    step_seconds: float
    progress_events: int
    events: int
    outcome: str

    @property
    def progress_bound(self) -> int:
        """The most progress events the rate limit lets through in this run's step."""
        return math.ceil(self.step_seconds * PROGRESS_PER_SECOND) + 1


REPORTING, EMPTY, NONE = "set_progress", "empty_method", "none"


async def one_run(client: httpx.AsyncClient, calls: int, report: str) -> Run:
    """POST a ``flood`` run, follow all its events to the terminal one."""
    body = {"pipeline": "flood", "params": {"calls": calls, "report": report},
            "labels": {"bench": "progress_flood"}}  # fmt: skip
    started = time.perf_counter()
    response = await client.post("/runs", json=body)
    response.raise_for_status()
    run_id = response.json()["id"]
    kind, counts, step_seconds = "", {"events": 0, "progress": 0}, math.nan
    headers = {"Last-Event-ID": "0"}
    async with client.stream("GET", f"/runs/{run_id}/events", headers=headers) as stream:
        stream.raise_for_status()
        async for line in stream.aiter_lines():
            if line.startswith("event:"):
                kind = line.removeprefix("event:").strip()
            elif line.startswith("data:"):
                counts["events"] += 1
                counts["progress"] += kind == "step.progress"
                if kind == "step.succeeded":
                    step_seconds = _duration(line.removeprefix("data:"))
    seconds = time.perf_counter() - started
    if kind not in TERMINAL_EVENTS:
        raise RuntimeError(f"run {run_id}: the stream ended after {kind or 'nothing'!r}")
    return Run(seconds, step_seconds, counts["progress"], counts["events"], kind)


def _duration(data: str) -> float:
    event: dict[str, Any] = json.loads(data)
    found = event.get("duration_seconds", event.get("data", {}).get("duration_seconds"))
    return float(found) if found is not None else math.nan


@dataclass(frozen=True)
class Samples:
    """Per repetition, one run of each kind, and the calls each made."""

    flood: list[Run]
    empty: list[Run]
    bare: list[Run]
    calls: int

    @property
    def all(self) -> tuple[Run, ...]:
        return (*self.flood, *self.empty, *self.bare)

    def ratio(self, runs: list[Run], baseline: list[Run], step: bool = False) -> float:
        """Median over the repetitions of the run (or step) time of ``runs`` over
        ``baseline``'s."""
        if step:
            return median_ratio([r.step_seconds for r in runs], [r.step_seconds for r in baseline])
        return median_ratio([r.seconds for r in runs], [r.seconds for r in baseline])

    def per_call_ns(self, runs: list[Run]) -> list[float]:
        """Per repetition, what each call added to the step, over the step not reporting."""
        return [
            (r.step_seconds - b.step_seconds) / self.calls * 1e9
            for r, b in zip(runs, self.bare, strict=True)
        ]


async def sample(url: str, reps: int, calls: int) -> Samples:
    out = Samples([], [], [], calls)
    kinds = ((REPORTING, out.flood), (EMPTY, out.empty), (NONE, out.bare))
    async with httpx.AsyncClient(base_url=url, timeout=RUN_TIMEOUT_S, trust_env=False) as client:
        async with asyncio.timeout(RUN_TIMEOUT_S * (len(kinds) * (reps + 1))):
            for report, _runs in kinds:
                await one_run(client, WARMUP_CALLS, report)
            for _ in range(reps):
                for report, runs in kinds:
                    runs.append(await one_run(client, calls, report))
    return out


def rows(samples: Samples) -> list[Row]:
    flood, empty, bare = samples.flood, samples.empty, samples.bare
    return [
        to_row("reporting: run", "s", [r.seconds for r in flood]),
        to_row("reporting: step", "s", [r.step_seconds for r in flood]),
        to_row("reporting: progress events", "", [r.progress_events for r in flood]),
        to_row("reporting: all events", "", [r.events for r in flood]),
        to_row("not reporting: run", "s", [r.seconds for r in bare]),
        to_row("not reporting: step", "s", [r.step_seconds for r in bare]),
        to_row("empty method: run", "s", [r.seconds for r in empty]),
        to_row("empty method: step", "s", [r.step_seconds for r in empty]),
        to_row("set_progress, per call", "ns", samples.per_call_ns(flood)),
        to_row("empty method, per call", "ns", samples.per_call_ns(empty)),
    ]


def verdicts(samples: Samples) -> list[Verdict]:
    flood, empty, bare = samples.flood, samples.empty, samples.bare
    ratio = samples.ratio(flood, bare)
    over = max(r.progress_events - r.progress_bound for r in flood)
    failed = sum(r.outcome != "run.succeeded" for r in samples.all)
    return [
        Verdict("reporting / not, run time", ratio, "x", f"< {RATIO_TARGET:g}",
                ratio < RATIO_TARGET),
        Verdict("reporting / not, step time", samples.ratio(flood, bare, step=True), "x"),
        Verdict("empty method / not, run time", samples.ratio(empty, bare), "x"),
        Verdict("empty method / not, step time", samples.ratio(empty, bare, step=True), "x"),
        Verdict("reporting / empty method, run time", samples.ratio(flood, empty), "x"),
        Verdict("progress events over the rate limit", over, "", "<= 0", over <= 0),
        Verdict("runs not succeeded", failed, "", "0", failed == 0),
    ]  # fmt: skip


def summary(samples: Samples) -> list[Summary]:
    flood, bare = samples.flood, samples.bare
    table = rows(samples)
    ratio = samples.ratio(flood, bare)
    floor = samples.ratio(samples.empty, bare)
    bound = max(r.progress_bound for r in flood)
    stored = table[2]
    lines = [
        summary_of(
            table[0], "progress flood", f"{samples.calls:,} set_progress calls, one run over HTTP",
            baseline="same step, no reporting", baseline_median=table[4].median, ratio=ratio,
            target=f"< {RATIO_TARGET:g}x", passed=ratio < RATIO_TARGET,
            note=f"step alone: {table[1].median:.3g} s vs {table[5].median:.3g} s; "
            f"an empty method instead: {floor:.3g}x; per call {table[8].median:.0f} ns, "
            f"an empty method's {table[9].median:.0f} ns",
        ),
        summary_of(
            stored, "progress flood", "step.progress events stored per run",
            target=f"<= {PROGRESS_PER_SECOND:g}/s of step + 1",
            passed=all(r.progress_events <= r.progress_bound for r in flood),
            note=f"bound {bound} in the longest step",
        ),
    ]  # fmt: skip
    failed = sum(r.outcome != "run.succeeded" for r in samples.all)
    if failed:  # the figures are of runs that did not do their work
        warning = f"{failed} runs did not succeed"
        return [replace(x, passed=False, note=f"{x.note}; {warning}") for x in lines]
    return lines


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--reps", type=int, default=DEFAULT_REPS, help="repetitions")
    parser.add_argument("--calls", type=int, default=DEFAULT_CALLS, help="set_progress calls")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    if args.reps < 1 or args.calls < 1:
        parser.error("--reps and --calls must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config = {"calls": args.calls, "reps": args.reps,
              "progress_per_second": PROGRESS_PER_SECOND}  # fmt: skip
    with (
        tempfile.TemporaryDirectory(prefix="stepline-bench-") as tmp,
        serving("stepline", *stepline(Path(tmp), pipelines=PIPELINES)) as server,
    ):
        samples = run_async(sample(server.url, args.reps, args.calls))
    print_report(
        f"progress flood: {args.calls:,} set_progress calls in one step, {args.reps} reps",
        config,
        rows(samples),
        verdicts(samples),
        args.json,
        summary(samples),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
