"""What the HTTP benchmarks share: servers in child processes, /proc readings, statistics,
the report's tables.

Every server is a child process on 127.0.0.1 with its output in a log file. Stepline runs
as ``python -m app serve`` (the ``stepline serve`` command) on a SQLite file in a temporary
directory, with the ``NOOP_10`` test pipeline; the bare baselines run from ``_baselines.py``
with the uvicorn flags that command passes.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import math
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Coroutine, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

PROJECT_ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = PROJECT_ROOT / "bench"
HOST = "127.0.0.1"
PIPELINE = "NOOP_10"
PIPELINES_SETTING = "tests.app.pipelines:NOOP_10"
READY_PATH = "/healthz"
STARTUP_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_BYTES = os.sysconf("SC_PAGESIZE")
MIB = 1024 * 1024

T = TypeVar("T")


# -- servers ---------------------------------------------------------------------------------


@dataclass
class Server:
    """A server in a child process, answering on ``url``."""

    name: str
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def rss_mib(self) -> float:
        """Resident memory now (``/proc/PID/statm``)."""
        with open(f"/proc/{self.process.pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE_BYTES / MIB

    def cpu_seconds(self) -> float:
        """User plus system CPU time used so far, all threads (``/proc/PID/stat``)."""
        with open(f"/proc/{self.process.pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _answers(port: int) -> bool:
    connection = http.client.HTTPConnection(HOST, port, timeout=2)
    try:
        connection.request("GET", READY_PATH)
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


@contextmanager
def serving(name: str, argv: Sequence[str], env: dict[str, str], log: Path) -> Iterator[Server]:
    """Start ``argv`` (which must take ``--port``), wait until it answers, stop it after."""
    port = free_port()
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [*argv, "--port", str(port)], env=env, cwd=PROJECT_ROOT, stdout=out, stderr=out
        )
    server = Server(name, process, port, log)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not _answers(port):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start:\n{server.log_tail()}")
            time.sleep(0.1)
        yield server
    finally:
        _stop(process)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def stepline(
    tmp: Path, log_name: str = "stepline.log", pipelines: Sequence[str] = (PIPELINES_SETTING,)
) -> tuple[list[str], dict[str, str], Path]:
    """What ``serving`` needs to run ``stepline serve`` on a fresh SQLite file in ``tmp``,
    with the test ``pipelines`` (``module:attr`` paths)."""
    tmp.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "STEPLINE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp / 'stepline.db'}",
        "STEPLINE_PIPELINES": ",".join(pipelines),
        "PYTHONPATH": str(PROJECT_ROOT),  # tests.app.pipelines is not installed
    }
    return [sys.executable, "-m", "app", "serve"], env, tmp / log_name


def baseline(kind: str, tmp: Path) -> tuple[list[str], dict[str, str], Path]:
    """What ``serving`` needs to run one of the bare apps of ``_baselines.py``."""
    tmp.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    return [sys.executable, str(BENCH_DIR / "_baselines.py"), kind], env, tmp / f"{kind}.log"


def run_async(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` on uvloop when it is installed (as uvicorn's servers use it)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


def raise_fd_limit(wanted: int) -> int:
    """Raise this process's soft limit on open files to ``wanted`` (or the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return int(soft)


# -- statistics ------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank ``q``-th percentile (``q`` in 0..100) of ``values``."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class Row:
    """One figure over the repetitions: median, min and max."""

    label: str
    unit: str
    median: float
    min: float
    max: float
    reps: int


def to_row(label: str, unit: str, samples: Sequence[float]) -> Row:
    return Row(label, unit, statistics.median(samples), min(samples), max(samples), len(samples))


@dataclass(frozen=True)
class Verdict:
    """A figure, its target and whether it was met (``None``: no target)."""

    label: str
    value: float
    unit: str
    target: str = ""
    passed: bool | None = None


@dataclass(frozen=True)
class Summary:
    """One line of the combined table of ``run_all.py``: a Stepline figure over the
    repetitions, the median of the baseline it is set against in the same run, the ratio of
    the two (the median of the per-repetition ratios where a benchmark pairs them, else the
    ratio of the medians), the target and whether it was met (``None``: no target).
    ``skipped`` says why the comparison (or the whole line, when it has no figures) could
    not be made."""

    benchmark: str
    measure: str
    unit: str
    median: float | None = None
    min: float | None = None
    max: float | None = None
    baseline: str = ""
    baseline_median: float | None = None
    ratio: float | None = None
    target: str = ""
    passed: bool | None = None
    note: str = ""
    skipped: str | None = None


def summary_of(row: Row, benchmark: str, measure: str, **fields: Any) -> Summary:
    """A ``Summary`` with ``row``'s median, min and max."""
    return Summary(benchmark, measure, row.unit, row.median, row.min, row.max, **fields)


def median_ratio(values: Sequence[float], baselines: Sequence[float]) -> float:
    """The median of the per-repetition ratios ``values[i] / baselines[i]``."""
    ratios = [v / b for v, b in zip(values, baselines, strict=True) if b]
    return statistics.median(ratios) if ratios else math.nan


def format_rows(rows: Sequence[Row]) -> list[str]:
    width = max(len(r.label) for r in rows)
    units = max(len(r.unit) for r in rows)
    lines = [f"{'':<{width}}  {'':<{units}}  {'median':>9}  {'min':>9}  {'max':>9}  reps"]
    for r in rows:
        lines.append(
            f"{r.label:<{width}}  {r.unit:<{units}}  {r.median:>9.4g}  {r.min:>9.4g}"
            f"  {r.max:>9.4g}  {r.reps:>4}"
        )
    return lines


def format_verdicts(items: Sequence[Verdict]) -> list[str]:
    width = max(len(v.label) for v in items)
    lines = []
    for v in items:
        mark = "" if v.passed is None else ("PASS" if v.passed else "MISS")
        target = f"target {v.target}" if v.target else ""
        lines.append(
            f"{v.label:<{width}}  {v.value:>9.4g} {v.unit:<6} {target:<14} {mark}".rstrip()
        )
    return lines


@contextmanager
def child_cpu() -> Iterator[list[float]]:
    """CPU seconds (user + system) of the children waited for inside the block."""
    box: list[float] = []
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        yield box
    finally:
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        box.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)


def print_report(
    title: str,
    config: dict[str, Any],
    rows: Sequence[Row],
    verdicts: Sequence[Verdict],
    as_json: bool,
    summary: Sequence[Summary] = (),
) -> None:
    """Print a benchmark's table and verdicts, or the same as JSON with its config and its
    lines of the combined table."""
    if as_json:
        out = {"config": config, "rows": [asdict(r) for r in rows],
               "verdicts": [asdict(v) for v in verdicts],
               "summary": [asdict(s) for s in summary]}  # fmt: skip
        print(json.dumps(out, indent=2))
        return
    print(title)
    print()
    print("\n".join(format_rows(rows)))
    print()
    print("\n".join(format_verdicts(verdicts)))
