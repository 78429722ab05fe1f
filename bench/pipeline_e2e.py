"""Runs completed per second, end to end through the API (a by-hand benchmark, not a test).

What is measured: ``stepline serve`` (``python -m app serve``, default settings but
``--workers``, which sets ``STEPLINE_WORKERS``: how many runs execute at once; the default
is the core count, 2 on this machine) on a fresh SQLite file in a temporary directory, with
the ``NOOP_10`` test pipeline (ten no-op steps). Each client, a task in this process on
keep-alive connections (``_raw_http.py``: httpx would spend more CPU per run than the
server on this machine of two cores), loops: ``POST /runs``, then follow
``GET /runs/{id}/events`` (SSE) until the stream ends after the run's terminal event.
``CLIENTS`` clients (1 and 32) loop for ``--seconds``; the runs whose terminal event
arrived before the deadline count, the runs in flight at the deadline finish uncounted
before the next measurement starts. Also reported: the median time from POST to terminal
event, and the CPU this (client) process and the server used.

Baseline, in this process and in the same repetition: the same ten step objects through
``steps.Orchestrator(registry, BaseStepContext(RuntimeContext())).execute()`` for
``BASELINE_S``, a fresh registry and context per run as the server builds them, nothing
stored and nothing sent. ``in-process / API`` is how many times more runs per second the
bare orchestrator completes: the cost of durability (23 events per run, stored in 13
committed, fsynced SQLite transactions, each step's context checkpointed with its result)
and of HTTP.

The bare stack, in each repetition: the same clients against ``_baselines.py pipeline``, a
FastAPI app on the same uvicorn flags that stores and executes nothing. Its ``POST /runs``
answers the body Stepline answered for one run, and its event stream sends what that run's
stream sent, in the same writes, at once, through sse-starlette (both captured from
Stepline before the first window). ``API / bare`` is the share of what the same HTTP and
SSE carry alone that Stepline reaches while storing and executing the runs; ``bare / DBOS``,
how far above DBOS the stack itself stands; the server CPU per run, where the time goes.
With one client, a run also waits for commits one after the other: at the least
``COMMITS_PER_RUN``, if no step starts before its start is stored (Stepline makes one more,
its claim). ``1-client ceiling`` is the rate of a run that costs only the bare stack's
latency and those commits at the floor.

The physical floor, in each repetition: ``commit_floor.py``'s time of one committed
one-row SQLite write, with the store's own pragmas, on a file beside the server's. The
durable step cost is the median run latency with 1 client over the ten steps; the target
is that it stays within ``FLOOR_RATIO_TARGET`` times the floor.

``--dbos`` adds the peer, in each repetition: ``bench/peers/dbos_workflow.py`` under the
DBOS virtualenv (``bench/_peers.py``), a workflow of ten no-op steps on a SQLite system
database in WAL mode, 1 and 32 client threads, windows as long as these. The target is that
Stepline completes at least ``DBOS_RATIO_TARGET`` times as many runs per second.

Each repetition measures the baseline, 1 client and 32 clients, the same against the bare
stack, the floor and DBOS in turn, after one warm-up window each; every figure is the median
over ``--reps`` (min and max beside it), every ratio the median of the per-repetition
ratios. Takes about ``reps * (4 * (RAMP_S + seconds) + BASELINE_S + FLOOR_S + 4) + 15``
seconds (100 s by default), and about 17 s more per repetition with ``--dbos``. With
``--json``, the output's ``summary`` holds this benchmark's lines of the combined table
(``run_all.py``).

Run from the project root::

    .venv/bin/python bench/pipeline_e2e.py [--reps N] [--seconds S] [--dbos] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import math
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from _dbos import DbosRep, run_dbos
from _harness import (
    HOST,
    PIPELINE,
    PROJECT_ROOT,
    Row,
    Server,
    Summary,
    Verdict,
    baseline,
    median_ratio,
    print_report,
    run_async,
    serving,
    stepline,
    summary_of,
    to_row,
)
from _peers import DBOS
from _raw_http import RawClient, event_names_in
from commit_floor import commit_cost_us

from app.settings import Settings
from steps import BaseStep, BaseStepContext, Orchestrator, RuntimeContext, StepRegistry

CLIENTS = (1, 32)
DEFAULT_REPS = 3
DEFAULT_SECONDS = 4.0
RAMP_S = 1.5
"""Time each window runs before it starts counting."""
WARMUP_S = 1.0
BASELINE_S = 1.0
FLOOR_S = 1.0
STEPS = 10
COMMITS_PER_RUN = STEPS + 2
"""The fewest commits a run waits for one after the other, alone, if no step starts before
its start is stored: the run's creation, each step's start (which can carry the end of the
step before, and the first one the claim) and the run's end."""
DBOS_RATIO_TARGET = 10.0
FLOOR_RATIO_TARGET = 10.0
REQUEST_TIMEOUT_S = 30.0
DRAIN_TIMEOUT_S = 60.0
"""Longest wait for the runs in flight at a deadline."""
BODY = {"pipeline": PIPELINE, "params": {}, "labels": {"bench": "pipeline_e2e"}}
BODY_BYTES = json.dumps(BODY).encode()
TERMINAL_EVENTS = frozenset({"run.succeeded", "run.failed", "run.cancelled"})


def noop_steps() -> list[BaseStep[Any]]:
    """The steps of the ``NOOP_10`` pipeline the server runs (``tests`` is not installed)."""
    if str(PROJECT_ROOT) not in sys.path:
        sys.path.insert(0, str(PROJECT_ROOT))
    return list(importlib.import_module("tests.app.pipelines").NOOP_10)


def in_process_rate(steps: Sequence[BaseStep[Any]], seconds: float) -> float:
    """Runs per second of the bare orchestrator over ``steps``, for ``seconds``."""
    count = 0
    started = time.perf_counter()
    deadline = started + seconds
    while time.perf_counter() < deadline:
        registry: StepRegistry[Any] = StepRegistry()
        for step in steps:
            registry.register(step)
        Orchestrator(registry, BaseStepContext(RuntimeContext())).execute()
        count += 1
    return count / (time.perf_counter() - started)


async def one_run(client: RawClient) -> str:
    """POST a run, follow its stream to the end, return its terminal event."""
    run_id = json.loads(await client.post_json("/runs", BODY_BYTES))["id"]
    names = await client.event_names(f"/runs/{run_id}/events")
    last = names[-1] if names else ""
    if last not in TERMINAL_EVENTS:
        raise RuntimeError(f"run {run_id}: the stream ended after {last or 'nothing'!r}")
    return last


@dataclass(frozen=True)
class Window:
    """What ``clients`` clients completed in one window."""

    clients: int
    rate: float
    latency_ms: float
    failed: int
    client_cores: float
    server_cores: float

    @property
    def cpu_per_run_ms(self) -> float:
        """The server's CPU time per run completed."""
        return self.server_cores / self.rate * 1e3 if self.rate else math.nan


def _cpu_self() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def window(client: RawClient, server: Server, clients: int, seconds: float) -> Window:
    latencies: list[float] = []
    outcomes: list[str] = []
    cpu, server_cpu = _cpu_self(), server.cpu_seconds()
    started = time.perf_counter()
    counted, deadline = started + RAMP_S, started + RAMP_S + seconds

    async def loop() -> None:
        while time.perf_counter() < deadline:
            begun = time.perf_counter()
            outcome = await one_run(client)
            ended = time.perf_counter()
            if counted <= ended <= deadline:
                latencies.append(ended - begun)
                outcomes.append(outcome)

    async with asyncio.timeout(RAMP_S + seconds + DRAIN_TIMEOUT_S):
        await asyncio.gather(*(loop() for _ in range(clients)))
    wall = time.perf_counter() - started
    return Window(
        clients=clients,
        rate=len(latencies) / seconds,
        latency_ms=statistics.median(latencies) * 1e3 if latencies else float("nan"),
        failed=sum(o != "run.succeeded" for o in outcomes),
        client_cores=(_cpu_self() - cpu) / wall,
        server_cores=(server.cpu_seconds() - server_cpu) / wall,
    )


async def capture_template(client: RawClient) -> dict[str, Any]:
    """What one run looked like to its client: the ``POST`` answer and its event stream, in
    the chunks (the server's writes) it came in."""
    created = await client.post_json("/runs", BODY_BYTES)
    run_id = json.loads(created)["id"]
    chunks = await client.stream_chunks(f"/runs/{run_id}/events")
    kinds = event_names_in(b"".join(chunks))
    if kinds.count("step.succeeded") != STEPS or kinds[-1:] != ["run.succeeded"]:
        raise RuntimeError(f"run {run_id}: not a whole run of {STEPS} steps: {kinds}")
    return {"created": created.decode(), "chunks": [chunk.decode() for chunk in chunks]}


@dataclass
class Samples:
    baseline: list[float]
    windows: dict[int, list[Window]]
    bare: dict[int, list[Window]]
    floor_us: list[float] = field(default_factory=list)
    dbos: list[DbosRep] = field(default_factory=list)
    dbos_skipped: str | None = None


async def sample(
    server: Server, bare: Server, reps: int, seconds: float, tmp: Path, dbos: bool
) -> Samples:
    steps = noop_steps()
    out = Samples([], {n: [] for n in CLIENTS}, {n: [] for n in CLIENTS})
    out.dbos_skipped = (DBOS.unavailable() if dbos else None) or None
    client, bare_client = RawClient(HOST, server.port), RawClient(HOST, bare.port)
    try:
        template = await capture_template(client)
        await bare_client.post_json("/template", json.dumps(template).encode())
        in_process_rate(steps, BASELINE_S / 4)  # warm-up
        for n in CLIENTS:
            await window(client, server, n, WARMUP_S)
            await window(bare_client, bare, n, WARMUP_S)
        for _ in range(reps):
            out.baseline.append(in_process_rate(steps, BASELINE_S))
            for n in CLIENTS:
                out.windows[n].append(await window(client, server, n, seconds))
            for n in CLIENTS:
                out.bare[n].append(await window(bare_client, bare, n, seconds))
            out.floor_us.append(await asyncio.to_thread(commit_cost_us, tmp / "floor.db", FLOOR_S))
            if dbos and out.dbos_skipped is None:
                result = await asyncio.to_thread(run_dbos, CLIENTS, seconds, RAMP_S)
                if isinstance(result, str):
                    out.dbos_skipped = result
                else:
                    out.dbos.append(result)
    finally:
        client.close()
        bare_client.close()
    return out


def step_cost_us(samples: Samples) -> list[float]:
    """Per repetition: the median run latency with one client, per step, in µs."""
    return [w.latency_ms * 1e3 / STEPS for w in samples.windows[min(CLIENTS)]]


def ceiling_rate(samples: Samples) -> list[float]:
    """Per repetition: the runs per second of one client if a run cost only the bare
    stack's latency and ``COMMITS_PER_RUN`` commits at the floor."""
    bare = samples.bare[min(CLIENTS)]
    return [
        1e3 / (w.latency_ms + COMMITS_PER_RUN * floor / 1e3)
        for w, floor in zip(bare, samples.floor_us, strict=True)
    ]


def window_rows(name: str, prefix: str, clients: int, windows: list[Window]) -> list[Row]:
    """What ``windows`` measured with ``clients`` clients, under ``name``."""
    return [
        to_row(f"{name}, {clients} client(s)", "runs/s", [w.rate for w in windows]),
        to_row(f"  {prefix}run latency, {clients}", "ms", [w.latency_ms for w in windows]),
        to_row(f"  {prefix}server CPU, {clients}", "cores", [w.server_cores for w in windows]),
        to_row(
            f"  {prefix}server CPU per run, {clients}", "ms", [w.cpu_per_run_ms for w in windows]
        ),
        to_row(f"  {prefix}client CPU, {clients}", "cores", [w.client_cores for w in windows]),
    ]


def table(samples: Samples) -> list[Row]:
    rows = [to_row("in-process orchestrator", "runs/s", samples.baseline)]
    for n, windows in samples.windows.items():
        rows += window_rows("API", "", n, windows)
    for n, windows in samples.bare.items():
        rows += window_rows("bare HTTP + SSE", "bare ", n, windows)
    rows += [
        to_row(f"durable step cost, {min(CLIENTS)} client", "µs", step_cost_us(samples)),
        to_row("commit floor", "µs", samples.floor_us),
        to_row(f"{min(CLIENTS)}-client ceiling", "runs/s", ceiling_rate(samples)),
    ]
    if samples.dbos and not samples.dbos_skipped:
        for n in CLIENTS:
            rows += [
                to_row(f"DBOS, {n} client(s)", "runs/s", [r.rates[n] for r in samples.dbos]),
                to_row(f"  DBOS latency, {n}", "ms", [r.latency_ms[n] for r in samples.dbos]),
            ]
    return rows


def verdicts(samples: Samples) -> list[Verdict]:
    items = []
    for n, windows in samples.windows.items():
        ratio = statistics.median(
            b / w.rate for b, w in zip(samples.baseline, windows, strict=True) if w.rate
        )
        items.append(Verdict(f"in-process / API, {n} client(s)", ratio, "x"))
    low, high = min(CLIENTS), max(CLIENTS)
    scale = statistics.median(
        h.rate / lo.rate
        for lo, h in zip(samples.windows[low], samples.windows[high], strict=True)
        if lo.rate
    )
    items.append(Verdict(f"API {high} clients / {low} client", scale, "x"))
    for n in CLIENTS:
        ratio = bare_ratio(samples, n)
        items.append(Verdict(f"API / bare HTTP + SSE, {n} client(s)", ratio, "x"))
    floor = median_ratio(step_cost_us(samples), samples.floor_us)
    target = f"<= {FLOOR_RATIO_TARGET:g}"
    items.append(
        Verdict("durable step / commit floor", floor, "x", target, floor <= FLOOR_RATIO_TARGET)
    )
    if samples.dbos and not samples.dbos_skipped:
        target = f">= {DBOS_RATIO_TARGET:g}"
        for n in CLIENTS:
            ratio = dbos_ratio(samples, n)
            passed = ratio >= DBOS_RATIO_TARGET
            items.append(Verdict(f"API / DBOS, {n} client(s)", ratio, "x", target, passed))
        for n in CLIENTS:
            ratio = _over_dbos(samples, [w.rate for w in samples.bare[n]], n)
            items.append(Verdict(f"bare HTTP + SSE / DBOS, {n} client(s)", ratio, "x"))
        ratio = _over_dbos(samples, ceiling_rate(samples), low)
        items.append(Verdict(f"{low}-client ceiling / DBOS", ratio, "x"))
    failed = sum(w.failed for windows in samples.windows.values() for w in windows)
    items.append(Verdict("runs not succeeded", failed, "", "0", failed == 0))
    return items


def dbos_ratio(samples: Samples, clients: int) -> float:
    return _over_dbos(samples, [w.rate for w in samples.windows[clients]], clients)


def _over_dbos(samples: Samples, rates: list[float], clients: int) -> float:
    return median_ratio(rates[: len(samples.dbos)], [r.rates[clients] for r in samples.dbos])


def bare_ratio(samples: Samples, clients: int) -> float:
    return median_ratio(
        [w.rate for w in samples.windows[clients]], [w.rate for w in samples.bare[clients]]
    )


def summary(samples: Samples, dbos: bool, workers: int) -> list[Summary]:
    """This benchmark's lines of the combined table."""
    rows = {r.label: r for r in table(samples)}
    lines = []
    if dbos:
        for n in CLIENTS:
            lines.append(dbos_summary(samples, rows[f"API, {n} client(s)"], n, workers))
    low = min(CLIENTS)
    lines.append(
        summary_of(
            rows[f"durable step cost, {low} client"], "physical floor",
            f"durable step cost ({PIPELINE}, {low} client: run latency / {STEPS})",
            baseline="one SQLite commit, WAL, synchronous=FULL",
            baseline_median=rows["commit floor"].median,
            ratio=median_ratio(step_cost_us(samples), samples.floor_us),
            target=f"<= {FLOOR_RATIO_TARGET:g}x",
            passed=median_ratio(step_cost_us(samples), samples.floor_us) <= FLOOR_RATIO_TARGET,
        )
    )  # fmt: skip
    failed = sum(w.failed for windows in samples.windows.values() for w in windows)
    if failed:  # the figures are of runs that did not do their work
        warning = f"{failed} runs did not succeed"
        return [replace(x, passed=False, note=f"{x.note}; {warning}".lstrip("; ")) for x in lines]
    return lines


def dbos_summary(samples: Samples, ours: Row, clients: int, workers: int) -> Summary:
    measure = f"{PIPELINE} over HTTP, create -> terminal, {clients} client(s), {workers} workers"
    baseline = f"DBOS {DBOS.version}, 10-step workflow, {clients} thread(s)"
    target = f">= {DBOS_RATIO_TARGET:g}x"
    if samples.dbos_skipped or not samples.dbos:
        return summary_of(ours, "durable pipeline", measure, baseline=baseline, target=target,
                          skipped=samples.dbos_skipped or "no DBOS figures")  # fmt: skip
    ratio = dbos_ratio(samples, clients)
    theirs = statistics.median(r.rates[clients] for r in samples.dbos)
    first = samples.dbos[0]
    bare = _over_dbos(samples, [w.rate for w in samples.bare[clients]], clients)
    stands = f"bare HTTP + SSE alone {bare:.3g}x DBOS"
    if clients == min(CLIENTS):
        ceiling = _over_dbos(samples, ceiling_rate(samples), clients)
        stands += f", with {COMMITS_PER_RUN} commits {ceiling:.3g}x"
    else:
        ours_ms = statistics.median(w.cpu_per_run_ms for w in samples.windows[clients])
        bare_ms = statistics.median(w.cpu_per_run_ms for w in samples.bare[clients])
        stands += f"; server CPU {ours_ms:.2g} ms a run, bare {bare_ms:.2g} ms"
    return summary_of(
        ours, "durable pipeline", measure, baseline=baseline, baseline_median=theirs,
        ratio=ratio, target=target, passed=ratio >= DBOS_RATIO_TARGET,
        note=f"{bare_ratio(samples, clients):.2f}x of bare HTTP + SSE; {stands}; "
        f"DBOS on Python {first.python}, journal {first.journal_mode}, "
        f"synchronous={first.synchronous}",
    )  # fmt: skip


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--reps", type=int, default=DEFAULT_REPS, help="repetitions")
    parser.add_argument("--seconds", type=float, default=DEFAULT_SECONDS, help="per window")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--dbos", action="store_true", help="compare with DBOS")
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="runs the server executes at once (STEPLINE_WORKERS; default: its own default, "
        "the core count)",
    )
    args = parser.parse_args(argv)
    if args.reps < 1 or args.seconds <= 0 or (args.workers is not None and args.workers < 1):
        parser.error("--reps and --workers must be at least 1 and --seconds positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workers = args.workers or Settings().workers
    config = {"clients": list(CLIENTS), "reps": args.reps, "seconds": args.seconds,
              "baseline_seconds": BASELINE_S, "pipeline": PIPELINE, "dbos": args.dbos,
              "workers": workers}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="stepline-bench-") as tmp:
        argv_, env, log = stepline(Path(tmp))
        env["STEPLINE_WORKERS"] = str(workers)
        with (
            serving("stepline", argv_, env, log) as server,
            serving("bare", *baseline("pipeline", Path(tmp))) as bare,
        ):
            samples = run_async(sample(server, bare, args.reps, args.seconds, Path(tmp), args.dbos))
    if samples.dbos_skipped:
        config["dbos_skipped"] = samples.dbos_skipped
    elif samples.dbos:
        config["dbos_settings"] = samples.dbos[0].settings()
    print_report(
        (
            f"{PIPELINE} end to end: POST /runs + SSE to the terminal event, "
            f"{args.reps} x {args.seconds:g} s per client count"
        ),
        config,
        table(samples),
        verdicts(samples),
        args.json,
        summary(samples, args.dbos, workers),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
