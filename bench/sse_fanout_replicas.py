"""Delay of live events to many SSE subscribers split across two API replicas, against
all of them on one (a by-hand benchmark, not a test).

What is measured: two ``stepline serve`` servers, A and B, on one fresh PostgreSQL database
(default settings, runs executed in process), and ``--subscribers`` clients in this process
following ``GET /events`` (``sse_fanout.py``'s raw asyncio subscribers) while a run of the
``paced`` test pipeline, posted through A, makes one event a second (``TICKS`` of them,
and the run's own events at its start and end):

* ``one replica``: every subscriber on A (B runs too, with none);
* ``two replicas``: half on A, half on B.

On PostgreSQL every replica delivers from the event log, told of each commit by ``NOTIFY``,
whichever replica (or worker) wrote it; so with two replicas each event is read from the
log twice and each replica sends it to half the subscribers. For every event and
subscriber, the delay is the client's clock at receipt minus the event's ``time``, taken in
its transaction just before the commit (same machine, same clock); reported per phase as
in ``sse_fanout.py``: p50, p99, the typical event's p99, memory and CPU of both servers
(summed, in both phases: B reads the log in the first too), connected subscribers and
events lost.

Each repetition runs both phases, connecting the subscribers afresh; the ratios (two
replicas / one) are taken per repetition, then their median. The target: every subscriber
connected and no event lost. This process is the client of all the subscribers: on a
machine of few cores it competes with the servers for them, which bounds what a second
replica can show here. Takes about ``reps * 2 * (TICKS + 8)`` seconds (110 s by default).
Skipped (``{"skipped": reason}`` with ``--json``) when PostgreSQL is not there. With
``--json``, the output's ``summary`` holds this benchmark's lines of the combined table
(``run_all.py``).

Run from the project root::

    .venv/bin/python bench/sse_fanout_replicas.py [--reps N] [--subscribers N] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx
from _harness import (
    Row,
    Server,
    Summary,
    Verdict,
    median_ratio,
    print_report,
    raise_fd_limit,
    run_async,
    serving,
    summary_of,
)
from _scaleout import database, stepline_on, unavailable
from sse_fanout import PIPELINES, SPARE_FDS, TICK_S, TICKS, Phase, phase, post_paced, rows

SUBSCRIBERS = 1_000
DEFAULT_REPS = 3
PHASES = ("one replica", "two replicas")


async def sample(a: Server, b: Server, reps: int, subscribers: int) -> dict[str, list[Phase]]:
    out: dict[str, list[Phase]] = {name: [] for name in PHASES}
    async with httpx.AsyncClient(base_url=a.url, trust_env=False) as client:
        for _ in range(reps):
            result, _tally = await phase([a], subscribers, post_paced(client), also=[b])
            out["one replica"].append(result)
            result, _tally = await phase([a, b], subscribers, post_paced(client))
            out["two replicas"].append(result)
    return out


def table(out: dict[str, list[Phase]], subscribers: int) -> list[Row]:
    return [row for name in PHASES for row in rows(name, out[name], subscribers)]


def verdicts(out: dict[str, list[Phase]]) -> list[Verdict]:
    one, two = out["one replica"], out["two replicas"]
    lost = sum(p.lost for p in (*one, *two))
    return [
        Verdict("two / one replica p99 delay", ratio(out, "p99_ms"), "x"),
        Verdict("two / one replica p50 delay", ratio(out, "p50_ms"), "x"),
        Verdict("two / one replica typical event's p99", ratio(out, "event_p99_ms"), "x"),
        Verdict("two / one replica server CPU", ratio(out, "server_cores"), "x"),
        Verdict("events lost", lost, "", "0", lost == 0),
        Verdict("fewest subscribers connected", min(p.connected for p in (*one, *two)), ""),
    ]


def ratio(out: dict[str, list[Phase]], what: str) -> float:
    return median_ratio(
        [getattr(p, what) for p in out["two replicas"]],
        [getattr(p, what) for p in out["one replica"]],
    )


def summary(out: dict[str, list[Phase]], subscribers: int) -> list[Summary]:
    """This benchmark's lines of the combined table."""
    two = {r.label: r for r in rows("two replicas", out["two replicas"], subscribers)}
    one = {r.label: r for r in rows("one replica", out["one replica"], subscribers)}
    held = min(p.connected for p in out["two replicas"])
    lost = sum(p.lost for phases in out.values() for p in phases)
    typical = two["two replicas typical event's p99"].median

    def line(label: str, measure: str, **fields: Any) -> Summary:
        return summary_of(
            two[f"two replicas {label}"], "SSE fan-out, replicas", measure,
            baseline="all subscribers on one replica",
            baseline_median=one[f"one replica {label}"].median, **fields,
        )  # fmt: skip

    return [
        line("subscribers connected",
             f"{subscribers:,} subscribers on 2 replicas held, 1 event/s from a paced run",
             target=f"all {subscribers:,}, 0 events lost",
             passed=held == subscribers and lost == 0, note=f"{lost} events lost"),
        line("delay p99", f"p99 commit -> client delay, {subscribers:,} subscribers, 2 replicas",
             ratio=ratio(out, "p99_ms"), note=f"typical event's p99 {typical:.3g} ms"),
        line("delay p50", f"p50 commit -> client delay, {subscribers:,} subscribers, 2 replicas",
             ratio=ratio(out, "p50_ms")),
        line("server CPU", f"servers' CPU, {subscribers:,} subscribers, 2 replicas",
             ratio=ratio(out, "server_cores")),
    ]  # fmt: skip


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--reps", type=int, default=DEFAULT_REPS, help="repetitions")
    parser.add_argument("--subscribers", type=int, default=SUBSCRIBERS, help="SSE clients")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    if args.reps < 1 or args.subscribers < 2:
        parser.error("--reps must be at least 1 and --subscribers at least 2")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    reason = unavailable()
    if reason:
        print(json.dumps({"skipped": reason}) if args.json else f"skipped: {reason}")
        return 0
    limit = raise_fd_limit(2 * args.subscribers + SPARE_FDS)  # before the servers start
    if limit < args.subscribers + SPARE_FDS:
        print(f"sse_fanout_replicas: the open-files limit is {limit}; too low")
        return 1
    config = {"subscribers": args.subscribers, "reps": args.reps, "ticks": TICKS,
              "tick_s": TICK_S, "open_files": limit}  # fmt: skip
    with (
        tempfile.TemporaryDirectory(prefix="stepline-bench-") as tmp,
        database() as url,
        serving("a", *stepline_on(Path(tmp), "a", url, PIPELINES, {})) as a,
        serving("b", *stepline_on(Path(tmp), "b", url, PIPELINES, {})) as b,
    ):
        out = run_async(sample(a, b, args.reps, args.subscribers))
    print_report(
        f"SSE fan-out: {args.subscribers} subscribers on /events of one replica, then split "
        f"over two on one PostgreSQL database, a paced run, {args.reps} reps",
        config,
        table(out, args.subscribers),
        verdicts(out),
        args.json,
        summary(out, args.subscribers),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
