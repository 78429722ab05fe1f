"""Delay of live events to many SSE subscribers (a by-hand benchmark, not a test).

What is measured: ``SUBSCRIBERS`` (1,000) clients in this process follow one server's
``GET /events`` over raw asyncio connections (``_sse_client.py``: one TCP connection and
``Protocol`` each, ``data:`` lines parsed by hand, on uvloop) while events are produced;
for every event and subscriber, the delay is the client's clock at receipt minus the
event's ``time`` (same machine, same clock). Reported per phase: p50 and p99 of all those
delays; the "typical event's p99", the median over events of each event's p99 across
subscribers (how long one fan-out takes, which the overall p99 is not when a 100-250 ms
gen2 garbage collection of either server lands in the phase: the p99 of 69,000 deliveries
is then that pause); the server's resident memory (before the first subscribers, its growth
per subscriber, and its peak); the CPU the server and this client used; and events lost.
The events start once the server is idle after the subscribers connected.

* ``stepline``: ``stepline serve`` (``python -m app serve``) on a fresh SQLite file, default
  settings. This process POSTs ``RUNS`` ``NOOP_10`` runs, one every ``RUN_INTERVAL_S``; each
  makes 23 events (queued, started, two per step, succeeded), which every subscriber gets
  on the global stream. An event's ``time`` is taken in its transaction just before the
  commit, so the delay includes the commit's fsync as well as the fan-out. With 1,000
  subscribers the fan-out of one event keeps the event loop busy for tens of ms, and the
  run's next transition waits for it: the runs go as fast as the server can fan out.
* ``bare``: a FastAPI app whose ``/events`` is an sse-starlette stream per subscriber fed
  from an ``asyncio.Queue`` (``bench/_baselines.py broadcast``), same uvicorn flags, same
  ping and send timeout. It replays the events subscriber 0 received in the stepline phase
  just before, with the same types, ids and payloads, at the same offsets from the first
  one, each stamped with its send time and serialised once for everyone: the same offered
  load, without the store and with the cheapest possible fan-out.

Each repetition runs both phases, connecting the subscribers afresh; the ratios are taken
per repetition, then their median. The target is a stepline p99 within ``P99_RATIO_TARGET``
times the bare broadcaster's. The open-files limit of this process (and of the servers,
which inherit it) is raised to fit the connections. Takes about ``reps * 20`` seconds
(60 s by default).

Run from the project root::

    .venv/bin/python bench/sse_fanout.py [--reps N] [--subscribers N] [--json]
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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import httpx
from _harness import (
    PIPELINE,
    Row,
    Server,
    Verdict,
    baseline,
    percentile,
    print_report,
    raise_fd_limit,
    run_async,
    serving,
    stepline,
    to_row,
)
from _sse_client import Tally, follow

SUBSCRIBERS = 1_000
DEFAULT_REPS = 3
RUNS = 3
RUN_INTERVAL_S = 1.5
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
    rss_idle: float
    rss_connected: float
    rss_peak: float
    server_cores: float
    client_cores: float
    seconds: float


async def phase(
    server: Server, subscribers: int, produce: Callable[[Tally], Awaitable[int]]
) -> tuple[Phase, Tally]:
    """Connect the subscribers, let ``produce`` make events (it returns how many each
    subscriber should get), wait for them all, disconnect."""
    tally = Tally(subscribers)
    rss_idle = server.rss_mib()
    tasks = [asyncio.create_task(follow(server.port, tally, i)) for i in range(subscribers)]
    peak = [rss_idle]

    async def watch_rss() -> None:
        while True:
            peak[0] = max(peak[0], server.rss_mib())
            await asyncio.sleep(RSS_SAMPLE_S)

    watcher = asyncio.create_task(watch_rss())
    try:
        if not await wait_for(lambda: tally.connected == subscribers, CONNECT_TIMEOUT_S):
            failed = [t.exception() for t in tasks if t.done() and not t.cancelled()]
            raise RuntimeError(f"{tally.connected} of {subscribers} connected; {failed[:1]}")
        await settle(server)
        rss_connected = server.rss_mib()
        started, cpu, server_cpu = time.perf_counter(), _cpu_self(), server.cpu_seconds()
        expected = await produce(tally)
        await wait_for(lambda: min(tally.received) >= expected, DRAIN_TIMEOUT_S)
        wall = time.perf_counter() - started
        client_cores = (_cpu_self() - cpu) / wall
        server_cores = (server.cpu_seconds() - server_cpu) / wall
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
    ours: Server, bare: Server, reps: int, subscribers: int
) -> tuple[list[Phase], list[Phase]]:
    ours_phases: list[Phase] = []
    bare_phases: list[Phase] = []
    async with (
        httpx.AsyncClient(base_url=ours.url, trust_env=False) as ours_client,
        httpx.AsyncClient(base_url=bare.url, trust_env=False) as bare_client,
    ):
        for _ in range(reps):
            result, tally = await phase(ours, subscribers, post_runs(ours_client))
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
    return [
        Verdict("stepline / bare p99 delay", p99, "x", f"<= {P99_RATIO_TARGET:g}",
                p99 <= P99_RATIO_TARGET),
        Verdict("stepline / bare p50 delay", p50, "x"),
        Verdict("stepline / bare typical event's p99", typical, "x"),
        Verdict("stepline / bare peak RSS", rss, "x"),
        Verdict("events lost", lost, "", "0", lost == 0),
    ]  # fmt: skip


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--reps", type=int, default=DEFAULT_REPS, help="repetitions")
    parser.add_argument("--subscribers", type=int, default=SUBSCRIBERS, help="SSE clients")
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
    config = {"subscribers": args.subscribers, "reps": args.reps, "runs": RUNS,
              "run_interval_s": RUN_INTERVAL_S, "pipeline": PIPELINE}  # fmt: skip
    with (
        tempfile.TemporaryDirectory(prefix="stepline-bench-") as tmp,
        serving("stepline", *stepline(Path(tmp))) as ours,
        serving("bare", *baseline("broadcast", Path(tmp))) as bare,
    ):
        ours_phases, bare_phases = run_async(sample(ours, bare, args.reps, args.subscribers))
    table = rows("stepline", ours_phases, args.subscribers) + rows(
        "bare", bare_phases, args.subscribers
    )
    items = verdicts(ours_phases, bare_phases)
    print_report(
        (
            f"SSE fan-out: {args.subscribers} subscribers on /events, {RUNS} {PIPELINE} runs "
            f"{RUN_INTERVAL_S:g} s apart, {args.reps} reps"
        ),
        config,
        table,
        items,
        args.json,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
