"""Throughput and latency of ``POST /runs`` (a by-hand benchmark, not a test).

What is measured: ``wrk`` in its own process, with ``CONNECTIONS`` keep-alive connections
on ``WRK_THREADS`` thread(s), POSTs ``BODY`` (a ``NOOP_10`` run) for ``--seconds`` at

* ``bare``: a FastAPI endpoint that validates the body with Stepline's own ``RunCreate``
  and answers 202 with no body (``bench/_baselines.py create``), and at
* ``stepline``: ``stepline serve`` (``python -m app serve``) on a fresh SQLite file in a
  temporary directory, with the default settings otherwise: 2 workers on this machine run
  the created runs while the requests come in, on the same single writer connection.

Both are uvicorn with the flags ``stepline serve`` passes, one process each, on 127.0.0.1.
Each repetition measures both, one after the other (after a ``WARMUP_S`` warm-up of each),
against a new Stepline server and database. Reported per target: requests per second
(2xx only), wrk's p50 and p99 latency, and the CPU the server and wrk used, in cores. The
ratio is taken per repetition, then its median; the target is that Stepline answers at
least ``RATIO_TARGET`` of the bare endpoint's rate. wrk's own CPU shows that the generator
is not the limit: the bare endpoint's server should be near one core while wrk stays below
``GENERATOR_BUSY_LIMIT`` of its thread(s).

Needs wrk (``apt-get update && apt-get install -y wrk``); without it the benchmark says so
and exits 0. Takes about ``reps * (2 * (seconds + WARMUP_S) + 3)`` seconds (50 s by default).

Run from the project root::

    .venv/bin/python bench/http_create.py [--reps N] [--seconds S] [--json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _harness import (
    PIPELINE,
    Row,
    Server,
    Summary,
    Verdict,
    baseline,
    child_cpu,
    median_ratio,
    print_report,
    serving,
    stepline,
    summary_of,
    to_row,
)

CONNECTIONS = 50
WRK_THREADS = 1
DEFAULT_REPS = 3
DEFAULT_SECONDS = 7
WARMUP_S = 1
WRK_TIMEOUT = "10s"
WRK_SLACK_S = 30.0
"""How much longer than its duration wrk may take before it is killed."""
RATIO_TARGET = 0.5
GENERATOR_BUSY_LIMIT = 0.8
BODY = {"pipeline": PIPELINE, "params": {}, "labels": {"bench": "http_create"}}
INSTALL_HINT = "apt-get update && apt-get install -y wrk"

# wrk calls done() once at the end; it prints one JSON line that run_wrk() parses.
LUA = """
wrk.method = "POST"
wrk.body = [[%(body)s]]
wrk.headers["Content-Type"] = "application/json"

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%%d,"duration_us":%%d,"status_errors":%%d,"socket_errors":%%d,' ..
    '"p50_us":%%d,"p99_us":%%d}\\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


@dataclass(frozen=True)
class Load:
    """One wrk run against one server."""

    rps: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: int
    server_cores: float
    wrk_cores: float


def run_wrk(server: Server, script: Path, seconds: int) -> Load:
    command = [
        "wrk", f"-t{WRK_THREADS}", f"-c{CONNECTIONS}", f"-d{seconds}s",
        "--timeout", WRK_TIMEOUT, "-s", str(script), f"{server.url}/runs",
    ]  # fmt: skip
    cpu_before, started = server.cpu_seconds(), time.perf_counter()
    with child_cpu() as wrk_cpu:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=seconds + WRK_SLACK_S, check=False
        )
    wall = time.perf_counter() - started
    server_cpu = server.cpu_seconds() - cpu_before
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    out: dict[str, int] = json.loads(lines[-1])
    duration = out["duration_us"] / 1e6
    return Load(
        rps=(out["requests"] - out["status_errors"]) / duration,
        p50_ms=out["p50_us"] / 1e3,
        p99_ms=out["p99_us"] / 1e3,
        non_2xx=out["status_errors"],
        socket_errors=out["socket_errors"],
        server_cores=server_cpu / wall,
        wrk_cores=wrk_cpu[0] / wall,
    )


def measure(server: Server, script: Path, seconds: int) -> Load:
    run_wrk(server, script, WARMUP_S)
    return run_wrk(server, script, seconds)


def sample(reps: int, seconds: int, tmp: Path) -> tuple[list[Load], list[Load]]:
    script = tmp / "post.lua"
    script.write_text(LUA % {"body": json.dumps(BODY)})
    bare: list[Load] = []
    ours: list[Load] = []
    with serving("bare", *baseline("create", tmp)) as bare_server:
        for rep in range(reps):
            bare.append(measure(bare_server, script, seconds))
            with serving("stepline", *stepline(tmp / f"rep{rep}")) as server:
                ours.append(measure(server, script, seconds))
    return bare, ours


def rows(name: str, loads: list[Load]) -> list[Row]:
    return [
        to_row(f"{name} throughput", "req/s", [x.rps for x in loads]),
        to_row(f"{name} p50 latency", "ms", [x.p50_ms for x in loads]),
        to_row(f"{name} p99 latency", "ms", [x.p99_ms for x in loads]),
        to_row(f"{name} server CPU", "cores", [x.server_cores for x in loads]),
        to_row(f"{name} wrk CPU", "cores", [x.wrk_cores for x in loads]),
    ]


def verdicts(bare: list[Load], ours: list[Load]) -> list[Verdict]:
    ratio = statistics.median(o.rps / b.rps for b, o in zip(bare, ours, strict=True))
    p99 = statistics.median(o.p99_ms / b.p99_ms for b, o in zip(bare, ours, strict=True))
    busy = max(b.wrk_cores for b in bare) / WRK_THREADS
    errors = sum(x.non_2xx + x.socket_errors for x in (*bare, *ours))
    return [
        Verdict("stepline / bare throughput", ratio, "x", f">= {RATIO_TARGET:g}",
                ratio >= RATIO_TARGET),
        Verdict("stepline / bare p99 latency", p99, "x"),
        Verdict("wrk busy on bare (max)", busy, "share", f"< {GENERATOR_BUSY_LIMIT:g}",
                busy < GENERATOR_BUSY_LIMIT),
        Verdict("non-2xx and socket errors", errors, "", "0", errors == 0),
    ]  # fmt: skip


def summary(bare: list[Load], ours: list[Load]) -> list[Summary]:
    """This benchmark's lines of the combined table."""
    table = {r.label: r for r in rows("stepline", ours)}
    bare_table = {r.label.replace("bare", "stepline", 1): r for r in rows("bare", bare)}
    errors = sum(x.non_2xx + x.socket_errors for x in (*bare, *ours))

    def line(label: str, measure: str, ratio: float, **fields: Any) -> Summary:
        return summary_of(
            table[label],
            "run creation",
            measure,
            baseline="bare FastAPI endpoint",
            baseline_median=bare_table[label].median,
            ratio=ratio,
            **fields,
        )

    ratio = median_ratio([o.rps for o in ours], [b.rps for b in bare])
    return [
        line(
            "stepline throughput",
            f"POST /runs, {CONNECTIONS} connections",
            ratio,
            target=f">= {RATIO_TARGET:.0%} of bare",
            passed=ratio >= RATIO_TARGET and errors == 0,
            note=f"{errors} non-2xx or socket errors" if errors else "",
        ),
        line(
            "stepline p50 latency",
            "POST /runs p50 latency",
            median_ratio([o.p50_ms for o in ours], [b.p50_ms for b in bare]),
        ),
        line(
            "stepline p99 latency",
            "POST /runs p99 latency",
            median_ratio([o.p99_ms for o in ours], [b.p99_ms for b in bare]),
        ),
    ]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--reps", type=int, default=DEFAULT_REPS, help="repetitions")
    parser.add_argument("--seconds", type=int, default=DEFAULT_SECONDS, help="per measurement")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    if args.reps < 1 or args.seconds < 1:
        parser.error("--reps and --seconds must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("wrk") is None:
        reason = f"wrk is not installed; install it with: {INSTALL_HINT}"
        print(json.dumps({"skipped": reason}) if args.json else f"http_create: skipped ({reason})")
        return 0
    config: dict[str, Any] = {
        "connections": CONNECTIONS, "wrk_threads": WRK_THREADS, "reps": args.reps,
        "seconds": args.seconds, "body": BODY,
    }  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="stepline-bench-") as tmp:
        bare, ours = sample(args.reps, args.seconds, Path(tmp))
    table = rows("bare", bare) + rows("stepline", ours)
    items = verdicts(bare, ours)
    print_report(
        (
            f"POST /runs: {CONNECTIONS} connections, wrk -t{WRK_THREADS}, "
            f"{args.reps} x {args.seconds} s per target"
        ),
        config,
        table,
        items,
        args.json,
        summary(bare, ours),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
