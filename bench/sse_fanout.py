"""Delay of live events to many SSE subscribers (a by-hand benchmark, not a test).

What is measured: ``--subscribers`` (1,000; the suite also runs 5,000) clients in this
process follow one server's ``GET /events`` over raw asyncio connections
(``_sse_client.py``: one TCP connection and ``Protocol`` each, ``data:`` lines parsed by
hand, on uvloop) while events are produced; for every event and subscriber, the delay is the
client's clock at receipt minus the event's ``time`` (same machine, same clock). Reported
per phase: p50 and p99 of all those delays; the "typical event's p99", the median over
events of each event's p99 across subscribers (how long one fan-out takes, which the
overall p99 is not when a 100-250 ms gen2 garbage collection of either server lands in the
phase); the server's resident memory (before the first subscribers, its growth per
subscriber, and its peak); the CPU the server and this client used; how many subscribers
connected; and events lost. The events start once the server is idle after the subscribers
connected.

* ``stepline``: ``stepline serve`` (``python -m app serve``) on a fresh SQLite file, default
  settings. This process POSTs one run of the ``paced`` test pipeline: one step that
  reports progress ``TICKS`` times, ``TICK_S`` apart, so every subscriber gets one event
  per second from a real run (and the run's own events at its start and end) on the
  global stream. With ``--burst``, instead, ``RUNS`` ``NOOP_10`` runs ``RUN_INTERVAL_S``
  apart, 23 events each in quick succession: with 1,000 subscribers the fan-out of one
  event keeps the event loop busy for tens of ms, and the run's next transition waits for
  it. An event's ``time`` is taken in its transaction just before the commit, so the delay
  includes the commit's fsync as well as the fan-out.
* ``bare``: a FastAPI app whose ``/events`` is an sse-starlette stream per subscriber fed
  from an ``asyncio.Queue`` (``bench/_baselines.py broadcast``), same uvicorn flags, same
  ping and send timeout. It replays the events subscriber 0 received in the stepline phase
  just before, with the same types, ids and payloads, at the same offsets from the first
  one, each stamped with its send time and serialised once for everyone: the same offered
  load, without the store and with the cheapest possible fan-out.

Each repetition runs both phases, connecting the subscribers afresh; the ratios are taken
per repetition, then their median. The targets: every subscriber connected and no event
lost, and a stepline p99 within ``P99_RATIO_TARGET`` times the bare broadcaster's. The
open-files limit of this process (and of the servers, which inherit it) is raised to fit
the connections. Takes about ``reps * 2 * (TICKS + 8)`` seconds with 1,000 subscribers
(110 s by default), more with 5,000 as the connections take longer to open. With
``--json``, the output's ``summary`` holds this benchmark's lines of the combined table
(``run_all.py``).

Run from the project root::

    .venv/bin/python bench/sse_fanout.py [--reps N] [--subscribers N] [--burst] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from _harness import (
    PIPELINE,
    PIPELINES_SETTING,
    Row,
    Server,
    Summary,
    Verdict,
    baseline,
    median_ratio,
    percentile,
    print_report,
    raise_fd_limit,
    run_async,
    serving,
    stepline,
    summary_of,
    to_row,
)
from _sse_client import Tally, follow

SUBSCRIBERS = 1_000
DEFAULT_REPS = 3
RUNS = 3
RUN_INTERVAL_S = 1.5
TICKS = 10
TICK_S = 1.0
PACED = {"pipeline": "paced", "params": {"ticks": TICKS, "interval": TICK_S},
         "labels": {"bench": "sse_fanout"}}  # fmt: skip
PIPELINES = (PIPELINES_SETTING, "tests.app.pipelines:PacedAction")
P99_RATIO_TARGET = 1.5
CONNECT_TIMEOUT_S = 30.0
DRAIN_TIMEOUT_S = 30.0
"""Longest wait, after the last run was posted, for every subscriber to get every event."""
POLL_S = 0.05
SETTLE_SAMPLE_S = 0.25
SETTLE_TIMEOUT_S = 10.0
IDLE_CORES = 0.1
"""A server using less CPU than this over SETTLE_SAMPLE_S is idle."""
RSS_SAMPLE_S = 0.1
SPARE_FDS = 256
BODY = {"pipeline": PIPELINE, "params": {}, "labels": {"bench": "sse_fanout"}}


# -- phases ------------------------------------------------------------------------------


async def wait_for(condition: Callable[[], bool], within: float) -> bool:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(POLL_S)
    return True


async def settle(server: Server) -> bool:
    """Wait until the server is idle: stepline's streams still read the event log after
    they said ``connected``, and the events must not queue behind a thousand such reads."""
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    while time.monotonic() < deadline:
        before = server.cpu_seconds()
        await asyncio.sleep(SETTLE_SAMPLE_S)
        if server.cpu_seconds() - before < IDLE_CORES * SETTLE_SAMPLE_S:
            return True
    return False


@dataclass(frozen=True)
class Phase:
    """One phase: delays in ms, memory in MiB."""

    p50_ms: float
    p99_ms: float
    event_p99_ms: float
    events: int
    lost: int
    connected: int
    rss_idle: float
    rss_connected: float
    rss_peak: float
    server_cores: float
    client_cores: float
    seconds: float


async def phase(
    server: Server | Sequence[Server],
    subscribers: int,
    produce: Callable[[Tally], Awaitable[int]],
    also: Sequence[Server] = (),
) -> tuple[Phase, Tally]:
    """Connect the subscribers (to each of several servers in turn), let ``produce`` make
    events (it returns how many each subscriber should get), wait for them all, disconnect.
    Memory and CPU are summed over the servers, and over ``also`` (servers that take part
    in the phase without subscribers)."""
    servers = [server] if isinstance(server, Server) else list(server)
    measured = [*servers, *also]

    def rss() -> float:
        return sum(s.rss_mib() for s in measured)

    def server_cpu_seconds() -> float:
        return sum(s.cpu_seconds() for s in measured)

    tally = Tally(subscribers)
    rss_idle = rss()
    tasks = [
        asyncio.create_task(follow(servers[i % len(servers)].port, tally, i))
        for i in range(subscribers)
    ]
    peak = [rss_idle]

    async def watch_rss() -> None:
        while True:
            peak[0] = max(peak[0], rss())
            await asyncio.sleep(RSS_SAMPLE_S)

    watcher = asyncio.create_task(watch_rss())
    try:
        # Those that do not connect in time lose every event: the phase goes on without them.
        await wait_for(lambda: tally.connected == subscribers, CONNECT_TIMEOUT_S)
        for each in measured:
            await settle(each)
        rss_connected = rss()
        started, cpu, server_cpu = time.perf_counter(), _cpu_self(), server_cpu_seconds()
        expected = await produce(tally)
        await wait_for(lambda: min(tally.received) >= expected, DRAIN_TIMEOUT_S)
        wall = time.perf_counter() - started
        client_cores = (_cpu_self() - cpu) / wall
        server_cores = (server_cpu_seconds() - server_cpu) / wall
    finally:
        watcher.cancel()
        for task in tasks:
            task.cancel()
        await asyncio.gather(watcher, *tasks, return_exceptions=True)
    delays_ms = [d * 1e3 for per_event in tally.delays.values() for d in per_event]
    event_p99s = [percentile(per_event, 99) * 1e3 for per_event in tally.delays.values()]
    result = Phase(
        p50_ms=percentile(delays_ms, 50),
        p99_ms=percentile(delays_ms, 99),
        event_p99_ms=statistics.median(event_p99s) if event_p99s else math.nan,
        events=expected,
        lost=expected * subscribers - len(delays_ms),
        connected=tally.connected,
        rss_idle=rss_idle,
        rss_connected=rss_connected,
        rss_peak=peak[0],
        server_cores=server_cores,
        client_cores=client_cores,
        seconds=wall,
    )
    return result, tally


def _cpu_self() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# -- the producers ---------------------------------------------------------------------------


def post_paced(client: httpx.AsyncClient) -> Callable[[Tally], Awaitable[int]]:
    async def produce(tally: Tally) -> int:
        (await client.post("/runs", json=PACED)).raise_for_status()
        await wait_for(lambda: min(tally.terminal) >= 1, TICKS * TICK_S + DRAIN_TIMEOUT_S)
        return len(tally.recorded)

    return produce


def post_runs(client: httpx.AsyncClient) -> Callable[[Tally], Awaitable[int]]:
    async def produce(tally: Tally) -> int:
        for i in range(RUNS):
            if i:
                await asyncio.sleep(RUN_INTERVAL_S)
            (await client.post("/runs", json=BODY)).raise_for_status()
        await wait_for(lambda: min(tally.terminal) >= RUNS, DRAIN_TIMEOUT_S)
        return len(tally.recorded)

    return produce


def replay(
    client: httpx.AsyncClient, recorded: list[tuple[str, str, bytes]]
) -> Callable[[Tally], Awaitable[int]]:
    events = []
    first: float | None = None
    for kind, event_id, data in recorded:
        body = json.loads(data)
        sent = datetime.fromisoformat(body["time"]).timestamp()
        first = sent if first is None else first
        events.append({"offset": sent - first, "type": kind, "id": event_id, "data": body})

    async def produce(tally: Tally) -> int:
        (await client.post("/replay", json={"events": events})).raise_for_status()
        return len(events)

    return produce


# -- repetitions and report ------------------------------------------------------------------


async def sample(
    ours: Server, bare: Server, reps: int, subscribers: int, burst: bool
) -> tuple[list[Phase], list[Phase]]:
    ours_phases: list[Phase] = []
    bare_phases: list[Phase] = []
    async with (
        httpx.AsyncClient(base_url=ours.url, trust_env=False) as ours_client,
        httpx.AsyncClient(base_url=bare.url, trust_env=False) as bare_client,
    ):
        for _ in range(reps):
            producer = post_runs(ours_client) if burst else post_paced(ours_client)
            result, tally = await phase(ours, subscribers, producer)
            ours_phases.append(result)
            result, _ = await phase(bare, subscribers, replay(bare_client, tally.recorded))
            bare_phases.append(result)
    return ours_phases, bare_phases


def rows(name: str, phases: list[Phase], subscribers: int) -> list[Row]:
    # Freed memory stays with the process, so only the first phase shows the growth.
    first = phases[0]
    per_sub = (first.rss_connected - first.rss_idle) * 1024 / subscribers
    return [
        to_row(f"{name} delay p50", "ms", [p.p50_ms for p in phases]),
        to_row(f"{name} delay p99", "ms", [p.p99_ms for p in phases]),
        to_row(f"{name} typical event's p99", "ms", [p.event_p99_ms for p in phases]),
        to_row(f"{name} RSS before subscribers", "MiB", [first.rss_idle]),
        to_row(f"{name} RSS per subscriber", "KiB", [per_sub]),
        to_row(f"{name} RSS peak", "MiB", [p.rss_peak for p in phases]),
        to_row(f"{name} events per subscriber", "", [p.events for p in phases]),
        to_row(f"{name} subscribers connected", "", [p.connected for p in phases]),
        to_row(f"{name} phase", "s", [p.seconds for p in phases]),
        to_row(f"{name} server CPU", "cores", [p.server_cores for p in phases]),
        to_row(f"{name} client CPU", "cores", [p.client_cores for p in phases]),
    ]


def verdicts(ours: list[Phase], bare: list[Phase]) -> list[Verdict]:
    pairs = list(zip(ours, bare, strict=True))
    p99 = statistics.median(o.p99_ms / b.p99_ms for o, b in pairs)
    p50 = statistics.median(o.p50_ms / b.p50_ms for o, b in pairs)
    typical = statistics.median(o.event_p99_ms / b.event_p99_ms for o, b in pairs)
    rss = statistics.median(o.rss_peak / b.rss_peak for o, b in pairs)
    lost = sum(p.lost for p in (*ours, *bare))
    held = min(p.connected for p in (*ours, *bare))
    return [
        Verdict("stepline / bare p99 delay", p99, "x", f"<= {P99_RATIO_TARGET:g}",
                p99 <= P99_RATIO_TARGET),
        Verdict("stepline / bare p50 delay", p50, "x"),
        Verdict("stepline / bare typical event's p99", typical, "x"),
        Verdict("stepline / bare peak RSS", rss, "x"),
        Verdict("events lost", lost, "", "0", lost == 0),
        Verdict("fewest subscribers connected", held, ""),
    ]  # fmt: skip


def summary(ours: list[Phase], bare: list[Phase], subscribers: int, burst: bool) -> list[Summary]:
    """This benchmark's lines of the combined table."""
    table = {r.label: r for r in rows("stepline", ours, subscribers)}
    bare_table = {
        r.label.replace("bare", "stepline", 1): r for r in rows("bare", bare, subscribers)
    }
    load = f"{RUNS} {PIPELINE} runs" if burst else "1 event/s from a paced run"
    held, lost = min(p.connected for p in ours), sum(p.lost for p in ours)
    p99 = median_ratio([p.p99_ms for p in ours], [p.p99_ms for p in bare])
    typical = table["stepline typical event's p99"].median

    def line(label: str, measure: str, **fields: Any) -> Summary:
        return summary_of(
            table[label], "SSE fan-out", measure, baseline="bare sse-starlette broadcaster",
            baseline_median=bare_table[label].median, **fields,
        )  # fmt: skip

    return [
        line("stepline subscribers connected", f"{subscribers:,} subscribers held, {load}",
             target=f"all {subscribers:,}, 0 events lost",
             passed=held == subscribers and lost == 0, note=f"{lost} events lost"),
        line("stepline delay p99", f"p99 commit -> client delay, {subscribers:,} subscribers",
             ratio=p99, target=f"<= {P99_RATIO_TARGET:g}x", passed=p99 <= P99_RATIO_TARGET,
             note=f"typical event's p99 {typical:.3g} ms"),
        line("stepline RSS peak", f"server RSS peak, {subscribers:,} subscribers",
             ratio=median_ratio([p.rss_peak for p in ours], [p.rss_peak for p in bare])),
    ]  # fmt: skip


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--reps", type=int, default=DEFAULT_REPS, help="repetitions")
    parser.add_argument("--subscribers", type=int, default=SUBSCRIBERS, help="SSE clients")
    parser.add_argument("--burst", action="store_true", help="NOOP_10 runs, not a paced one")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    if args.reps < 1 or args.subscribers < 1:
        parser.error("--reps and --subscribers must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    limit = raise_fd_limit(2 * args.subscribers + SPARE_FDS)  # before the servers start
    if limit < args.subscribers + SPARE_FDS:
        print(f"sse_fanout: the open-files limit is {limit}; too low for {args.subscribers}")
        return 1
    config = {"subscribers": args.subscribers, "reps": args.reps, "burst": args.burst,
              "runs": RUNS, "run_interval_s": RUN_INTERVAL_S, "pipeline": PIPELINE,
              "ticks": TICKS, "tick_s": TICK_S, "open_files": limit}  # fmt: skip
    with (
        tempfile.TemporaryDirectory(prefix="stepline-bench-") as tmp,
        serving("stepline", *stepline(Path(tmp), pipelines=PIPELINES)) as ours,
        serving("bare", *baseline("broadcast", Path(tmp))) as bare,
    ):
        ours_phases, bare_phases = run_async(
            sample(ours, bare, args.reps, args.subscribers, args.burst)
        )
    table = rows("stepline", ours_phases, args.subscribers) + rows(
        "bare", bare_phases, args.subscribers
    )
    load = (
        f"{RUNS} {PIPELINE} runs {RUN_INTERVAL_S:g} s apart"
        if args.burst
        else (f"a paced run, {TICKS} events {TICK_S:g} s apart")
    )
    print_report(
        f"SSE fan-out: {args.subscribers} subscribers on /events, {load}, {args.reps} reps",
        config,
        table,
        verdicts(ours_phases, bare_phases),
        args.json,
        summary(ours_phases, bare_phases, args.subscribers, args.burst),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
