"""DBOS runs per second: a workflow of ten no-op steps, SQLite system database.

Runs under the DBOS virtualenv's Python (``bench/.venvs/dbos``, made by ``bench/_peers.py``),
not the project's. What is measured: ``@DBOS.workflow()`` calling ten ``@DBOS.step()``
functions that do nothing, each workflow and step checkpointed by DBOS in a SQLite file in a
temporary directory. The file is put in WAL mode before DBOS opens it, and ``synchronous``
is left at SQLite's default (FULL), the settings Stepline's store runs with; both are read
back and reported. For each client count, that many threads call the workflow in a loop:
a warm-up window, then ``--ramp`` seconds uncounted and ``--seconds`` counted; a workflow
counts when it returns inside the counted window. Reported per repetition: runs per second
and the median workflow latency, as one JSON object on the last line of stdout.

Run from the project root::

    bench/.venvs/dbos/bin/python bench/peers/dbos_workflow.py [--clients 1 32] [--reps N]
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

from dbos import DBOS, DBOSConfig

STEPS = 10
WARMUP_S = 1.0
JOIN_SLACK_S = 60.0
"""How long past its deadline a window's threads may take to finish their last workflow."""


@DBOS.step()
def noop() -> None:
    return None


@DBOS.workflow()
def ten_steps() -> int:
    for _ in range(STEPS):
        noop()
    return STEPS


def window(clients: int, ramp: float, seconds: float) -> dict[str, float]:
    """``clients`` threads loop over the workflow; what finished in the counted window."""
    latencies: list[float] = []
    lock = threading.Lock()
    started = time.perf_counter()
    counted, deadline = started + ramp, started + ramp + seconds

    def loop() -> None:
        while time.perf_counter() < deadline:
            begun = time.perf_counter()
            ten_steps()
            ended = time.perf_counter()
            if counted <= ended <= deadline:
                with lock:
                    latencies.append(ended - begun)

    threads = [threading.Thread(target=loop, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(0.0, deadline + JOIN_SLACK_S - time.perf_counter()))
    if any(thread.is_alive() for thread in threads):
        raise TimeoutError(f"{clients} client(s): a workflow ran past the window's slack")
    return {
        "rate": len(latencies) / seconds,
        "latency_ms": statistics.median(latencies) * 1e3 if latencies else float("nan"),
    }


def prepare(path: Path) -> dict[str, Any]:
    """Create the database file in WAL mode; the journal mode stays with the file."""
    with sqlite3.connect(path) as connection:
        mode = connection.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        synchronous = connection.execute("PRAGMA synchronous").fetchone()[0]
    connection.close()
    return {"journal_mode": mode, "synchronous": synchronous}


def measure(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    database = tmp / "dbos.sqlite"
    settings = prepare(database)
    config: DBOSConfig = {
        "name": "stepline-bench",
        "system_database_url": f"sqlite:///{database}",
        "log_level": "WARNING",
    }
    DBOS(config=config)
    DBOS.launch()
    try:
        for clients in args.clients:
            window(clients, 0.0, WARMUP_S)
        reps: list[dict[str, dict[str, float]]] = []
        for _ in range(args.reps):
            reps.append({str(n): window(n, args.ramp, args.seconds) for n in args.clients})
    finally:
        DBOS.destroy()
    logging.shutdown()
    return {
        "python": platform.python_version(),
        "dbos": version("dbos"),
        "sqlite": sqlite3.sqlite_version,
        "steps": STEPS,
        **settings,
        "reps": reps,
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--reps", type=int, default=1, help="repetitions")
    parser.add_argument("--seconds", type=float, default=4.0, help="counted per window")
    parser.add_argument("--ramp", type=float, default=1.5, help="uncounted start of a window")
    args = parser.parse_args(argv)
    if args.reps < 1 or args.seconds <= 0 or args.ramp < 0 or min(args.clients) < 1:
        parser.error("--reps and --clients must be at least 1, --seconds positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="stepline-bench-dbos-") as tmp:
        out = measure(args, Path(tmp))
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
