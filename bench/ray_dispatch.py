"""What executing runs on Ray costs per run, against the embedded executor (a by-hand
benchmark, not a test).

What is measured: two ``stepline serve`` servers side by side, each on a fresh PostgreSQL
database of its own, with the ``NOOP_10`` test pipeline (ten no-op steps) and
``--workers`` runs in flight at most (``STEPLINE_WORKERS``):

* ``embedded``: the default executor, runs executed by the server's own workers;
* ``ray``: ``STEPLINE_EXECUTOR=ray`` on a local Ray head of ``--ray-cpus`` logical CPUs,
  started for the benchmark: the server claims each run and submits a Ray task, and a Ray
  worker process executes it and writes every transition to PostgreSQL itself; the server
  hears of them by ``NOTIFY`` and streams them from the log.

Clients in this process loop ``POST /runs`` then follow ``GET /runs/{id}/events`` to the
terminal event (``pipeline_e2e.window``), with 1 client (per-run latency: what dispatch adds
to one run) and ``--clients`` clients (runs per second). Each repetition measures both
servers in turn, one window each per client count, after a warm-up of each (two rounds
of as many runs at once as may execute at once, so that Ray has started all the worker
processes it will use, then one window per client count); every ratio is ray / embedded
per repetition, then the median. The dispatch overhead per run is the difference of the
median latencies with one client. Also reported: the CPU the whole machine used during each
window (Ray's work is in its worker processes, not in the server), which on a shared
machine includes others'.

Takes about ``reps * 2 * 2 * (RAMP_S + seconds) + 30`` seconds (85 s by default). Skipped
(``{"skipped": reason}`` with ``--json``) when PostgreSQL or Ray is not there. With
``--json``, the output's ``summary`` holds this benchmark's lines of the combined table
(``run_all.py``).

Run from the project root::

    .venv/bin/python bench/ray_dispatch.py [--reps N] [--seconds S] [--clients N] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from _harness import (
    CLOCK_TICKS,
    HOST,
    PIPELINE,
    PIPELINES_SETTING,
    Row,
    Server,
    Summary,
    Verdict,
    median_ratio,
    print_report,
    run_async,
    serving,
    summary_of,
    to_row,
)
from _raw_http import RawClient
from _scaleout import database, ray_head, stepline_on, unavailable
from pipeline_e2e import WARMUP_S, Window, one_run, window

DEFAULT_REPS = 3
DEFAULT_SECONDS = 3.0
DEFAULT_CLIENTS = 8
DEFAULT_WORKERS = 8
DEFAULT_RAY_CPUS = 8
"""Logical CPUs: as many Ray tasks at once as the server keeps runs in flight."""
KINDS = ("embedded", "ray")
WARMUP_ROUNDS = 2  # of as many runs at once as can execute at once


def machine_busy_seconds() -> float:
    """CPU seconds every core of the machine has spent busy so far (``/proc/stat``)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields) - idle) / CLOCK_TICKS


@dataclass
class Measured:
    """One server's windows, by client count, and the machine's CPU during each."""

    windows: dict[int, list[Window]] = field(default_factory=dict)
    machine_cores: dict[int, list[float]] = field(default_factory=dict)


async def measured_window(
    client: RawClient, server: Server, clients: int, seconds: float
) -> tuple[Window, float]:
    busy, started = machine_busy_seconds(), time.perf_counter()
    result = await window(client, server, clients, seconds)
    return result, (machine_busy_seconds() - busy) / (time.perf_counter() - started)


async def sample(
    servers: dict[str, Server], reps: int, seconds: float, counts: tuple[int, ...], warm: int
) -> dict[str, Measured]:
    out = {kind: Measured({n: [] for n in counts}, {n: [] for n in counts}) for kind in KINDS}
    clients = {kind: RawClient(HOST, server.port) for kind, server in servers.items()}
    try:
        for kind in KINDS:
            # Ray starts a worker process for each task it runs at once, the first time:
            # seconds each. Every one is started (and has its connections) before measuring.
            for _ in range(WARMUP_ROUNDS):
                await asyncio.gather(*(one_run(clients[kind]) for _ in range(warm)))
            for n in counts:
                await window(clients[kind], servers[kind], n, WARMUP_S)
        for _ in range(reps):
            for n in counts:
                for kind in KINDS:
                    result, cores = await measured_window(clients[kind], servers[kind], n, seconds)
                    out[kind].windows[n].append(result)
                    out[kind].machine_cores[n].append(cores)
    finally:
        for client in clients.values():
            client.close()
    return out


def table(out: dict[str, Measured], counts: tuple[int, ...]) -> list[Row]:
    rows = []
    for kind in KINDS:
        for n in counts:
            windows = out[kind].windows[n]
            rows += [
                to_row(f"{kind}, {n} client(s)", "runs/s", [w.rate for w in windows]),
                to_row(f"  {kind} run latency, {n}", "ms", [w.latency_ms for w in windows]),
                to_row(f"  {kind} server CPU, {n}", "cores", [w.server_cores for w in windows]),
                to_row(f"  {kind} machine CPU, {n}", "cores", out[kind].machine_cores[n]),
            ]
    return rows


def ratio(out: dict[str, Measured], n: int, what: str) -> float:
    ours = [getattr(w, what) for w in out["ray"].windows[n]]
    theirs = [getattr(w, what) for w in out["embedded"].windows[n]]
    return median_ratio(ours, theirs)


def overhead_ms(out: dict[str, Measured], n: int) -> float:
    """Median run latency on Ray minus on the embedded executor."""
    return statistics.median(w.latency_ms for w in out["ray"].windows[n]) - statistics.median(
        w.latency_ms for w in out["embedded"].windows[n]
    )


def verdicts(out: dict[str, Measured], counts: tuple[int, ...]) -> list[Verdict]:
    items = []
    for n in counts:
        items += [
            Verdict(f"ray / embedded runs/s, {n} client(s)", ratio(out, n, "rate"), "x"),
            Verdict(f"ray / embedded latency, {n} client(s)", ratio(out, n, "latency_ms"), "x"),
        ]
    items.append(Verdict("dispatch overhead per run, 1 client", overhead_ms(out, 1), "ms"))
    failed = sum(w.failed for m in out.values() for ws in m.windows.values() for w in ws)
    items.append(Verdict("runs not succeeded", failed, "", "0", failed == 0))
    return items


def summary(
    out: dict[str, Measured], counts: tuple[int, ...], workers: int, cpus: int
) -> list[Summary]:
    """This benchmark's lines of the combined table."""
    rows = {r.label: r for r in table(out, counts)}
    failed = sum(w.failed for m in out.values() for ws in m.windows.values() for w in ws)
    warning = f"; {failed} runs did not succeed" if failed else ""
    baseline = f"embedded executor, same server settings, {workers} workers"
    lines = []
    for n in counts:
        latency = rows[f"  ray run latency, {n}"]
        rate = rows[f"ray, {n} client(s)"]
        lines.append(
            summary_of(
                latency, "Ray dispatch",
                f"{PIPELINE} create -> terminal latency on Ray ({cpus} CPUs), {n} client(s)",
                baseline=baseline,
                baseline_median=rows[f"  embedded run latency, {n}"].median,
                ratio=ratio(out, n, "latency_ms"),
                note=(f"+{overhead_ms(out, n):.3g} ms per run" if n == 1 else "") + warning,
                passed=False if failed else None,
            )
        )  # fmt: skip
        lines.append(
            summary_of(
                rate, "Ray dispatch", f"{PIPELINE} runs/s on Ray ({cpus} CPUs), {n} client(s)",
                baseline=baseline, baseline_median=rows[f"embedded, {n} client(s)"].median,
                ratio=ratio(out, n, "rate"), note=warning.lstrip("; "),
                passed=False if failed else None,
            )
        )  # fmt: skip
    return lines


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--reps", type=int, default=DEFAULT_REPS, help="repetitions")
    parser.add_argument("--seconds", type=float, default=DEFAULT_SECONDS, help="per window")
    parser.add_argument("--clients", type=int, default=DEFAULT_CLIENTS, help="for runs/s")
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS, help="STEPLINE_WORKERS")
    parser.add_argument("--ray-cpus", type=int, default=DEFAULT_RAY_CPUS, help="Ray's CPUs")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    if min(args.reps, args.clients, args.workers, args.ray_cpus) < 1 or args.seconds <= 0:
        parser.error("--reps, --clients, --workers and --ray-cpus must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    reason = unavailable(ray=True)
    if reason:
        print(json.dumps({"skipped": reason}) if args.json else f"skipped: {reason}")
        return 0
    counts = tuple(sorted({1, args.clients}))
    config = {"reps": args.reps, "seconds": args.seconds, "clients": list(counts),
              "workers": args.workers, "ray_cpus": args.ray_cpus,
              "pipeline": PIPELINE}  # fmt: skip
    common = {"STEPLINE_WORKERS": str(args.workers)}
    with (
        tempfile.TemporaryDirectory(prefix="stepline-bench-") as tmp,
        ray_head(Path(tmp), args.ray_cpus) as (address, auth),
        database() as embedded_db,
        database() as ray_db,
        serving(
            "embedded",
            *stepline_on(Path(tmp), "embedded", embedded_db, (PIPELINES_SETTING,), common),
        ) as embedded,
        serving(
            "ray",
            *stepline_on(
                Path(tmp), "ray", ray_db, (PIPELINES_SETTING,),
                {**common, **auth, "STEPLINE_EXECUTOR": "ray", "STEPLINE_RAY_ADDRESS": address},
            ),
        ) as on_ray,
    ):  # fmt: skip
        out = run_async(
            sample(
                {"embedded": embedded, "ray": on_ray},
                args.reps,
                args.seconds,
                counts,
                warm=max(args.workers, args.ray_cpus),
            )
        )
    print_report(
        f"{PIPELINE} on Ray against the embedded executor, {args.reps} x {args.seconds:g} s "
        "per client count and executor",
        config,
        table(out, counts),
        verdicts(out, counts),
        args.json,
        summary(out, counts, args.workers, args.ray_cpus),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
