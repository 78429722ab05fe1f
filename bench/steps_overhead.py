"""Per-step orchestration overhead of the ``steps`` library (a by-hand benchmark, not a test).

What is measured, per step, over a registry of N no-op steps (default 1,000), each returning
``StepResult()``:

* ``sync bare``: ``for s in steps: s.execute(ctx)``, the floor any orchestrator pays;
* ``sync orchestrated``: ``Orchestrator(registry, ctx, observers=[noop]).execute()``;
* ``async bare``: ``for s in steps: await s.execute(ctx)`` with ``async def execute``;
* ``async orchestrated``: ``await Orchestrator(...).execute_async()`` over the async steps.

Every row is timed with ``time.perf_counter_ns`` after one warm-up run, with the garbage
collector disabled while timing and ``gc.collect()`` between repetitions. Each repetition
gets a fresh context (and a fresh ``Orchestrator``, built outside the timed region); the
registry is reused. Bare and orchestrated runs alternate within each repetition so that
machine noise hits both alike. All async repetitions run inside one ``asyncio.run``, so the
event loop's creation is not timed. Each row reports the median, min and max in µs per
step; the overhead is ``median(orchestrated) - median(bare)``. Repetitions stop early (after
at least ``MIN_REPS``) once a phase has used its time budget, so a run stays well under a
minute even on a slow, noisy machine.

Targets: sync overhead below ``SYNC_OVERHEAD_TARGET_US`` µs per step, and async orchestrated
within ``ASYNC_RATIO_TARGET`` times sync orchestrated.

``--synapse`` also measures the synapse-sdk orchestrator on the same no-op steps, in the
Python 3.12 virtualenv at ``bench/.venvs/synapse`` (git-ignored; about 30 s and 440 MB to
install, which ``.venv/bin/python bench/_peers.py synapse`` does). That interpreter also
times our orchestrator, so the ratio compares like with like.

With ``--json``, the output's ``summary`` holds this benchmark's lines of the combined table
(``run_all.py``): each orchestrated row against its bare loop (target: at most
``SYNC_OVERHEAD_TARGET_US`` µs per step above it), and ours against synapse-sdk's in the
same interpreter (target: faster).

Run from the project root::

    .venv/bin/python bench/steps_overhead.py [--steps N] [--reps N] [--json] [--synapse]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any

from _harness import PROJECT_ROOT, Summary
from _peers import SYNAPSE

from steps import (
    BaseStep,
    BaseStepContext,
    Orchestrator,
    RuntimeContext,
    StepEvent,
    StepRegistry,
    StepResult,
)

DEFAULT_STEPS = 1_000
DEFAULT_REPS = 15
MIN_REPS = 3
PHASE_BUDGET_S = 8.0
"""Time after which a phase (sync or async) stops adding repetitions, once it has MIN_REPS."""
SYNC_OVERHEAD_TARGET_US = 3.0
ASYNC_RATIO_TARGET = 2.0
NS_PER_US = 1_000

SYNAPSE_TIMEOUT_S = 90.0


# -- the steps under test ------------------------------------------------------------------


@dataclass
class BenchContext(BaseStepContext):
    """The context every repetition gets afresh."""


class NoOpStep(BaseStep[BenchContext]):
    """A sync step that does nothing and succeeds."""

    def __init__(self, name: str) -> None:
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    @property
    def progress_weight(self) -> float:
        return 1.0

    def execute(self, context: BenchContext) -> StepResult:
        return StepResult()


class AsyncNoOpStep(NoOpStep):
    """An ``async def`` step that does nothing and succeeds."""

    async def execute(self, context: BenchContext) -> StepResult:  # type: ignore[override]
        return StepResult()


class NoOpObserver:
    """Receives every event and ignores it."""

    def on_event(self, event: StepEvent) -> None:
        pass


def make_registry(
    step_type: type[NoOpStep], count: int
) -> tuple[StepRegistry[BenchContext], list[NoOpStep]]:
    registry: StepRegistry[BenchContext] = StepRegistry()
    for i in range(count):
        registry.register(step_type(f"step-{i}"))
    return registry, registry.get_steps()  # type: ignore[return-value]


def fresh_context() -> BenchContext:
    return BenchContext(RuntimeContext())


def fresh_orchestrator(registry: StepRegistry[BenchContext]) -> Orchestrator[BenchContext]:
    return Orchestrator(registry, fresh_context(), observers=[NoOpObserver()])


# -- one timed run per call: setup outside the clock, gc off inside it -----------------------


def time_sync_bare(steps: list[NoOpStep]) -> int:
    ctx = fresh_context()
    gc.disable()
    started = time.perf_counter_ns()
    for s in steps:
        s.execute(ctx)
    elapsed = time.perf_counter_ns() - started
    gc.enable()
    return elapsed


def time_sync_orchestrated(registry: StepRegistry[BenchContext]) -> int:
    orchestrator = fresh_orchestrator(registry)
    gc.disable()
    started = time.perf_counter_ns()
    orchestrator.execute()
    elapsed = time.perf_counter_ns() - started
    gc.enable()
    return elapsed


async def time_async_bare(steps: list[NoOpStep]) -> int:
    ctx = fresh_context()
    gc.disable()
    started = time.perf_counter_ns()
    for s in steps:
        await s.execute(ctx)  # type: ignore[misc]
    elapsed = time.perf_counter_ns() - started
    gc.enable()
    return elapsed


async def time_async_orchestrated(registry: StepRegistry[BenchContext]) -> int:
    orchestrator = fresh_orchestrator(registry)
    gc.disable()
    started = time.perf_counter_ns()
    await orchestrator.execute_async()
    elapsed = time.perf_counter_ns() - started
    gc.enable()
    return elapsed


# -- repetitions -------------------------------------------------------------------------------


SyncTimer = Callable[[], int]
AsyncTimer = Callable[[], Awaitable[int]]


def sample_sync(timers: dict[str, SyncTimer], reps: int) -> dict[str, list[int]]:
    """Warm each timer up once, then run them in turn for up to ``reps`` repetitions."""
    for timer in timers.values():
        timer()
    samples: dict[str, list[int]] = {name: [] for name in timers}
    deadline = time.perf_counter() + PHASE_BUDGET_S
    for rep in range(reps):
        for name, timer in timers.items():
            gc.collect()
            samples[name].append(timer())
        if rep + 1 >= MIN_REPS and time.perf_counter() > deadline:
            break
    return samples


async def sample_async(timers: dict[str, AsyncTimer], reps: int) -> dict[str, list[int]]:
    """The async twin of ``sample_sync``, run inside one event loop."""
    for timer in timers.values():
        await timer()
    samples: dict[str, list[int]] = {name: [] for name in timers}
    deadline = time.perf_counter() + PHASE_BUDGET_S
    for rep in range(reps):
        for name, timer in timers.items():
            gc.collect()
            samples[name].append(await timer())
        if rep + 1 >= MIN_REPS and time.perf_counter() > deadline:
            break
    return samples


@dataclass(frozen=True)
class Row:
    """Per-step figures of one measured configuration, in µs."""

    label: str
    median_us: float
    min_us: float
    max_us: float
    reps: int


def to_row(label: str, samples_ns: list[int], steps: int) -> Row:
    per_step = [ns / steps / NS_PER_US for ns in samples_ns]
    return Row(label, statistics.median(per_step), min(per_step), max(per_step), len(per_step))


def measure_sync(step_count: int, reps: int) -> tuple[Row, Row]:
    registry, steps = make_registry(NoOpStep, step_count)
    samples = sample_sync(
        {
            "bare": lambda: time_sync_bare(steps),
            "orch": lambda: time_sync_orchestrated(registry),
        },
        reps,
    )
    return (
        to_row("sync bare loop", samples["bare"], step_count),
        to_row("sync orchestrated", samples["orch"], step_count),
    )


def measure_async(step_count: int, reps: int) -> tuple[Row, Row]:
    registry, steps = make_registry(AsyncNoOpStep, step_count)
    samples = asyncio.run(
        sample_async(
            {
                "bare": lambda: time_async_bare(steps),
                "orch": lambda: time_async_orchestrated(registry),
            },
            reps,
        )
    )
    return (
        to_row("async bare loop", samples["bare"], step_count),
        to_row("async orchestrated", samples["orch"], step_count),
    )


# -- synapse-sdk, in its own interpreter ---------------------------------------------------------

# Runs under bench/.venvs/synapse/bin/python with argv: steps reps budget_s project_root.
# Prints one JSON object of per-step µs lists: a bare loop, synapse's Orchestrator and ours,
# all in that interpreter, timed as above (warm-up, gc off, fresh context, alternating rows,
# at most budget_s seconds of repetitions once MIN_REPS are done).
SYNAPSE_SCRIPT = r"""
import gc, json, sys, time, warnings
from dataclasses import dataclass
from importlib.metadata import version

warnings.simplefilter("ignore")
steps_n, reps, budget_s, min_reps, root = sys.argv[1:6]
steps_n, reps, budget_s, min_reps = int(steps_n), int(reps), float(budget_s), int(min_reps)

from synapse_sdk.loggers import NoOpLogger
from synapse_sdk.plugins import RuntimeContext
from synapse_sdk.plugins.context.env import PluginEnvironment
from synapse_sdk.plugins.steps import (
    BaseStep, BaseStepContext, Orchestrator, StepRegistry, StepResult,
)

sys.path.insert(0, root)
import steps as ours


@dataclass
class Ctx(BaseStepContext):
    pass


@dataclass
class OurCtx(ours.BaseStepContext):
    pass


def make_step(base, result):
    class Step(base):
        def __init__(self, name):
            self._name = name
        @property
        def name(self):
            return self._name
        @property
        def progress_weight(self):
            return 1.0
        def execute(self, context):
            return result()
    return Step


class Observer:
    def on_event(self, event):
        pass


def noop_progress(current, total):
    pass


SynStep = make_step(BaseStep, StepResult)
OurStep = make_step(ours.BaseStep, ours.StepResult)
syn_registry, our_registry = StepRegistry(), ours.StepRegistry()
for i in range(steps_n):
    syn_registry.register(SynStep(f"step-{i}"))
    our_registry.register(OurStep(f"step-{i}"))
syn_steps = syn_registry.get_steps()


def syn_ctx():
    return Ctx(runtime_ctx=RuntimeContext(logger=NoOpLogger(), env=PluginEnvironment()))


def timed(fn):
    gc.collect()
    gc.disable()
    started = time.perf_counter_ns()
    fn()
    elapsed = time.perf_counter_ns() - started
    gc.enable()
    return elapsed / steps_n / 1000


def bare():
    ctx = syn_ctx()

    def loop():
        for s in syn_steps:
            s.execute(ctx)

    return timed(loop)


def synapse():
    orch = Orchestrator(syn_registry, syn_ctx(), noop_progress)
    return timed(orch.execute)


def stepline():
    orch = ours.Orchestrator(
        our_registry, OurCtx(ours.RuntimeContext()), observers=[Observer()]
    )
    return timed(orch.execute)


timers = {"bare": bare, "synapse": synapse, "ours": stepline}
for fn in timers.values():
    fn()
out = {name: [] for name in timers}
deadline = time.perf_counter() + budget_s
for rep in range(reps):
    for name, fn in timers.items():
        out[name].append(fn())
    if rep + 1 >= min_reps and time.perf_counter() > deadline:
        break
out["python"] = sys.version.split()[0]
out["synapse_sdk"] = version("synapse-sdk")
print(json.dumps(out))
"""


@dataclass(frozen=True)
class SynapseResult:
    """The synapse-sdk comparison, or why it was skipped."""

    skipped: str | None = None
    python: str | None = None
    version: str | None = None
    bare: Row | None = None
    synapse: Row | None = None
    ours: Row | None = None


def measure_synapse(step_count: int, reps: int) -> SynapseResult:
    reason = SYNAPSE.unavailable()
    if reason is not None:
        return SynapseResult(skipped=reason)
    args = [step_count, reps, PHASE_BUDGET_S, MIN_REPS, PROJECT_ROOT]
    command = [str(SYNAPSE.interpreter), "-c", SYNAPSE_SCRIPT, *map(str, args)]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=SYNAPSE_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        return SynapseResult(skipped=f"timed out after {SYNAPSE_TIMEOUT_S:g} s")
    except OSError as exc:
        return SynapseResult(skipped=f"cannot run {SYNAPSE.interpreter}: {exc}")
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return SynapseResult(skipped=f"exit {done.returncode}: {last}")
    try:
        data: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError) as exc:
        return SynapseResult(skipped=f"unreadable output: {exc!r}")
    return SynapseResult(
        python=data["python"],
        version=data["synapse_sdk"],
        bare=_row_from_us("synapse py bare loop", data["bare"]),
        synapse=_row_from_us("synapse-sdk orchestrated", data["synapse"]),
        ours=_row_from_us("ours orchestrated (same py)", data["ours"]),
    )


def _row_from_us(label: str, per_step_us: list[float]) -> Row:
    return Row(
        label,
        statistics.median(per_step_us),
        min(per_step_us),
        max(per_step_us),
        len(per_step_us),
    )


# -- report --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """A figure, its target and whether it was met."""

    label: str
    value: float
    unit: str
    target: str
    passed: bool | None = None


def verdicts(sync: tuple[Row, Row], async_: tuple[Row, Row]) -> list[Verdict]:
    (s_bare, s_orch), (a_bare, a_orch) = sync, async_
    sync_overhead = s_orch.median_us - s_bare.median_us
    async_ratio = a_orch.median_us / s_orch.median_us
    return [
        Verdict(
            "sync overhead above bare",
            sync_overhead,
            "µs/step",
            f"< {SYNC_OVERHEAD_TARGET_US:g}",
            sync_overhead < SYNC_OVERHEAD_TARGET_US,
        ),
        Verdict("async overhead above bare", a_orch.median_us - a_bare.median_us, "µs/step", ""),
        Verdict("sync orchestrated / bare", s_orch.median_us / s_bare.median_us, "x", ""),
        Verdict("async orchestrated / bare", a_orch.median_us / a_bare.median_us, "x", ""),
        Verdict(
            "async orch / sync orch",
            async_ratio,
            "x",
            f"< {ASYNC_RATIO_TARGET:g}",
            async_ratio < ASYNC_RATIO_TARGET,
        ),
    ]


def synapse_verdicts(result: SynapseResult, our_sync: Row) -> list[Verdict]:
    """Overheads in synapse's interpreter, and synapse's time as a multiple of ours."""
    if result.synapse is None or result.ours is None or result.bare is None:
        return []
    syn, same_py, bare = result.synapse.median_us, result.ours.median_us, result.bare.median_us
    return [
        Verdict("synapse overhead above bare", syn - bare, "µs/step", ""),
        Verdict("ours overhead above bare (same py)", same_py - bare, "µs/step", ""),
        Verdict("synapse / ours (same py)", syn / same_py, "x", ""),
        Verdict(
            f"synapse / ours (py {platform.python_version()})", syn / our_sync.median_us, "x", ""
        ),
    ]


BENCHMARK = "step overhead"
SYNC_OVERHEAD_TARGET = f"<= {SYNC_OVERHEAD_TARGET_US:g} µs/step above bare"


def summary(
    steps: int, sync: tuple[Row, Row], async_: tuple[Row, Row], syn: SynapseResult | None
) -> list[Summary]:
    """This benchmark's lines of the combined table."""
    lines = []
    for kind, (bare, orch) in (("sync", sync), ("async", async_)):
        overhead = orch.median_us - bare.median_us
        lines.append(
            Summary(
                BENCHMARK, f"{kind}, {steps:,} no-op steps, observer", "µs/step",
                orch.median_us, orch.min_us, orch.max_us, baseline="bare loop",
                baseline_median=bare.median_us, ratio=orch.median_us / bare.median_us,
                target=SYNC_OVERHEAD_TARGET, passed=overhead <= SYNC_OVERHEAD_TARGET_US,
                note=f"{overhead:+.2f} µs/step above bare",
            )
        )  # fmt: skip
    if syn is not None:
        lines.append(synapse_summary(steps, syn))
    return lines


def synapse_summary(steps: int, syn: SynapseResult) -> Summary:
    measure = f"sync, {steps:,} no-op steps, beside synapse-sdk"
    baseline = f"synapse-sdk {SYNAPSE.version}"
    if syn.ours is None or syn.synapse is None:
        return Summary(BENCHMARK, measure, "µs/step", baseline=baseline, skipped=syn.skipped)
    ours, theirs = syn.ours, syn.synapse
    ratio = ours.median_us / theirs.median_us
    return Summary(
        BENCHMARK, measure, "µs/step", ours.median_us, ours.min_us, ours.max_us,
        baseline=baseline, baseline_median=theirs.median_us, ratio=ratio,
        target="faster (< 1x)", passed=ratio < 1, note=f"both on Python {syn.python}",
    )  # fmt: skip


def format_rows(rows: list[Row]) -> list[str]:
    width = max(len(r.label) for r in rows)
    lines = [f"{'µs per step':<{width}}  {'median':>8}  {'min':>8}  {'max':>8}  reps"]
    for r in rows:
        lines.append(
            f"{r.label:<{width}}  {r.median_us:>8.3f}  {r.min_us:>8.3f}  {r.max_us:>8.3f}"
            f"  {r.reps:>4}"
        )
    return lines


def format_verdicts(items: list[Verdict]) -> list[str]:
    width = max(len(v.label) for v in items)
    lines = []
    for v in items:
        mark = "" if v.passed is None else ("PASS" if v.passed else "MISS")
        target = f"target {v.target}" if v.target else ""
        lines.append(f"{v.label:<{width}}  {v.value:>8.3f} {v.unit:<8}{target:<12} {mark}".rstrip())
    return lines


def synapse_lines(syn: SynapseResult, our_sync: Row) -> list[str]:
    if syn.bare is None or syn.synapse is None or syn.ours is None:
        return [f"synapse-sdk: skipped ({syn.skipped or 'no figures'})"]
    return [
        f"synapse-sdk {syn.version} on Python {syn.python}:",
        *format_rows([syn.bare, syn.synapse, syn.ours]),
        "",
        *format_verdicts(synapse_verdicts(syn, our_sync)),
    ]


def print_text(
    config: dict[str, Any], rows: list[Row], items: list[Verdict], syn: SynapseResult | None
) -> None:
    print(
        f"steps overhead: {config['steps']} no-op steps, up to {config['reps']} reps, "
        f"Python {config['python']}"
    )
    print()
    print("\n".join(format_rows(rows)))
    print()
    print("\n".join(format_verdicts(items)))
    if syn is not None:
        print()
        print("\n".join(synapse_lines(syn, rows[1])))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="no-op steps per run")
    parser.add_argument("--reps", type=int, default=DEFAULT_REPS, help="timed repetitions")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--synapse", action="store_true", help="compare with synapse-sdk")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.reps < 1:
        parser.error("--steps and --reps must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config = {"steps": args.steps, "reps": args.reps, "python": platform.python_version()}
    sync = measure_sync(args.steps, args.reps)
    async_ = measure_async(args.steps, args.reps)
    rows = [*sync, *async_]
    items = verdicts(sync, async_)
    syn = measure_synapse(args.steps, args.reps) if args.synapse else None
    if args.json:
        out: dict[str, Any] = {
            "config": config,
            "rows": [asdict(r) for r in rows],
            "verdicts": [asdict(v) for v in items],
            "summary": [asdict(x) for x in summary(args.steps, sync, async_, syn)],
        }
        if syn is not None:
            syn_items = synapse_verdicts(syn, sync[1])
            out["synapse"] = {**asdict(syn), "verdicts": [asdict(v) for v in syn_items]}
        print(json.dumps(out, indent=2))
    else:
        print_text(config, rows, items, syn)
    return 0


if __name__ == "__main__":
    sys.exit(main())
