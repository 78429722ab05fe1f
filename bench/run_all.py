"""Every benchmark, one combined table (what ``make bench`` runs).

Installs the peers first (``_peers.py``: synapse-sdk and DBOS, each in its own virtualenv
under ``bench/.venvs``; a peer that cannot be installed shows up as skipped, with the
reason, on its benchmark's lines). Then runs each benchmark as a child process with
``--json``, each within its own time bound, and collects the ``summary`` lines each prints:
per line a Stepline figure (median, min, max), the median of its baseline from the same
run, their ratio, the target and PASS or FAIL. A benchmark that fails or runs out of time
becomes a line saying so. The table is printed and written, with the versions, Python
interpreters, core count and load it ran with, to ``bench/RESULTS.md``. Takes about 13
minutes, and up to a few more the first time, while the peers are installed. The last two
need the PostgreSQL server the tests use (``STEPLINE_BENCH_POSTGRES``), and Ray for the
first of them.

Run from the project root::

    .venv/bin/python bench/run_all.py [--only NAME ...] [--output PATH]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _harness import BENCH_DIR, PROJECT_ROOT, Summary
from _peers import PEERS, install
from _results import document, table

STOP_GRACE_S = 20.0


@dataclass(frozen=True)
class Benchmark:
    """One child process of the suite and the longest it may take."""

    name: str
    title: str
    args: tuple[str, ...]
    timeout_s: float

    @property
    def command(self) -> list[str]:
        return [sys.executable, str(BENCH_DIR / f"{self.name}.py"), *self.args, "--json"]


SUITE = (
    Benchmark("steps_overhead", "step overhead", ("--synapse",), 240),
    # 32 runs at once, as DBOS runs its 32 clients' workflows at once.
    Benchmark("pipeline_e2e", "durable pipeline", ("--dbos", "--workers", "32"), 480),
    Benchmark("http_create", "run creation", (), 240),
    Benchmark("sse_fanout", "SSE fan-out", ("--subscribers", "1000"), 420),
    Benchmark("sse_fanout", "SSE fan-out", ("--subscribers", "5000"), 600),
    Benchmark("progress_flood", "progress flood", (), 420),
    # PostgreSQL (and Ray) from here: skipped, with the reason, where they are not.
    Benchmark("ray_dispatch", "Ray dispatch", (), 300),
    Benchmark("sse_fanout_replicas", "SSE fan-out, replicas", ("--subscribers", "1000"), 420),
)


def bounded(command: list[str], timeout: float) -> tuple[int, str, str] | None:
    """Run ``command``; its exit code, stdout and stderr, or ``None`` if it ran out of time.

    The benchmark starts its servers as its own children, so it runs in a process group of
    its own, and the whole group is ended when it runs out of time or this process stops.
    """
    process = subprocess.Popen(
        command, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        end_group(process)
        return None
    except BaseException:
        end_group(process)
        raise
    end_group(process)  # any server it left behind
    return process.returncode, stdout, stderr


def end_group(process: subprocess.Popen[str]) -> None:
    """SIGINT to the group (the benchmark then stops its servers itself), SIGKILL after."""
    for sig, grace in ((signal.SIGINT, STOP_GRACE_S), (signal.SIGKILL, STOP_GRACE_S)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.communicate(timeout=grace)


def run(bench: Benchmark) -> tuple[list[Summary], str]:
    """The benchmark's summary lines, and how it went."""
    done = bounded(bench.command, bench.timeout_s)
    if done is None:
        return [failed(bench, f"did not finish within {bench.timeout_s:g} s")], "timed out"
    code, stdout, stderr = done
    if code != 0:
        last = (stderr.strip() or stdout.strip() or "no output").splitlines()[-1]
        return [failed(bench, f"exit {code}: {last}")], f"failed ({code})"
    try:
        out: dict[str, Any] = json.loads(stdout)
    except ValueError as exc:
        return [failed(bench, f"unreadable output: {exc}")], "unreadable output"
    if "skipped" in out:
        return [Summary(bench.title, " ".join(bench.args) or bench.name, "",
                        skipped=str(out["skipped"]))], "skipped"  # fmt: skip
    lines = [Summary(**line) for line in out.get("summary", [])]
    return lines or [failed(bench, "no summary lines")], "ok"


def failed(bench: Benchmark, reason: str) -> Summary:
    return Summary(bench.title, " ".join([bench.name, *bench.args]), "", skipped=reason)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    names = sorted({b.name for b in SUITE})
    parser.add_argument("--only", nargs="+", choices=names, help="run only these benchmarks")
    parser.add_argument("--output", type=Path, default=BENCH_DIR / "RESULTS.md")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    load_before = os.getloadavg()
    for peer in PEERS.values():
        print(f"peer {peer.name}: installing {peer.requirement} if needed", file=sys.stderr)
        reason = install(peer)
        print(f"peer {peer.name}: {reason or 'ready'}", file=sys.stderr)
    lines: list[Summary] = []
    runs: list[dict[str, Any]] = []
    for bench in SUITE:
        if args.only and bench.name not in args.only:
            continue
        shown = " ".join(["bench/" + bench.name + ".py", *bench.args])
        print(f"{shown}: running (at most {bench.timeout_s:g} s)", file=sys.stderr)
        started = time.monotonic()
        found, status = run(bench)
        seconds = time.monotonic() - started
        print(f"{shown}: {status} in {seconds:.0f} s", file=sys.stderr)
        lines += found
        runs.append({"command": shown + " --json", "status": status, "seconds": seconds})
    print("\n".join(table(lines)))
    args.output.write_text(document(lines, load_before, runs))
    print(f"\nwritten to {args.output}", file=sys.stderr)
    return 0 if all(run["status"] in ("ok", "skipped") for run in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
