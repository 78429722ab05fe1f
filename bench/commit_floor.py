"""The physical floor of a durable step: one committed SQLite write (a by-hand benchmark).

What is measured: on a fresh SQLite file in a temporary directory, opened with the store's
own ``app.store.writer.connect`` (so with its pragmas, WAL and ``synchronous=FULL``, checked
by its ``verify_settings``), a loop of ``BEGIN IMMEDIATE``, one ``INSERT`` of a small JSON
row (an event's size) and ``COMMIT`` for ``--seconds``. Each commit waits for its fsync; the
figure is the time per commit, in µs. No durable step can cost less than this: a step's
result is acknowledged only once committed. ``pipeline_e2e.py`` takes the same reading in
each of its repetitions, beside its own, to set the durable step cost against it.

Run from the project root::

    .venv/bin/python bench/commit_floor.py [--reps N] [--seconds S] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _harness import Row, Verdict, print_report, to_row

from app.store.writer import connect

DEFAULT_REPS = 3
DEFAULT_SECONDS = 1.0
ROW = json.dumps({"step": "step1", "index": 0, "attempt": 1, "data": {}, "time": "0" * 32})


def settings(path: Path) -> dict[str, Any]:
    """The journal mode and ``synchronous`` level the store's connection runs with."""
    connection = connect(str(path))
    try:
        return {
            "journal_mode": connection.execute("PRAGMA journal_mode").fetchone()[0],
            "synchronous": connection.execute("PRAGMA synchronous").fetchone()[0],
        }
    finally:
        connection.close()


def commit_cost_us(path: Path, seconds: float) -> float:
    """Median µs per one-row commit on the SQLite file at ``path``, over ``seconds``."""
    connection = connect(str(path))
    try:
        connection.execute("CREATE TABLE IF NOT EXISTS floor (id INTEGER PRIMARY KEY, data TEXT)")
        times: list[int] = []
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline or len(times) < 3:
            started = time.perf_counter_ns()
            connection.execute("BEGIN IMMEDIATE")
            connection.execute("INSERT INTO floor (data) VALUES (?)", (ROW,))
            connection.execute("COMMIT")
            times.append(time.perf_counter_ns() - started)
    finally:
        connection.close()
    times.sort()
    return times[len(times) // 2] / 1e3


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--reps", type=int, default=DEFAULT_REPS, help="repetitions")
    parser.add_argument("--seconds", type=float, default=DEFAULT_SECONDS, help="per repetition")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    if args.reps < 1 or args.seconds <= 0:
        parser.error("--reps must be at least 1 and --seconds positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="stepline-bench-") as tmp:
        path = Path(tmp) / "floor.db"
        samples = [commit_cost_us(path, args.seconds) for _ in range(args.reps)]
        config: dict[str, Any] = {"reps": args.reps, "seconds": args.seconds, **settings(path)}
    rows: list[Row] = [to_row("one-row commit", "µs", samples)]
    items = [Verdict("commits per second", 1e6 / rows[0].median, "/s")]
    print_report(
        f"SQLite commit floor: {config['journal_mode']}, synchronous={config['synchronous']}",
        config,
        rows,
        items,
        args.json,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
