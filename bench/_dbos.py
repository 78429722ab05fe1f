"""Runs ``peers/dbos_workflow.py`` under the DBOS virtualenv and reads its figures."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from _harness import BENCH_DIR, PROJECT_ROOT
from _peers import DBOS

SCRIPT = BENCH_DIR / "peers" / "dbos_workflow.py"
LAUNCH_S = 15.0
"""Allowance for DBOS's start-up, migrations and shutdown, and the warm-up windows."""


@dataclass(frozen=True)
class DbosRep:
    """One repetition of the DBOS peer: runs per second and median latency by clients."""

    rates: dict[int, float]
    latency_ms: dict[int, float]
    python: str
    version: str
    journal_mode: str
    synchronous: int

    def settings(self) -> dict[str, Any]:
        return {"python": self.python, "dbos": self.version,
                "journal_mode": self.journal_mode, "synchronous": self.synchronous}  # fmt: skip


def run_dbos(clients: Sequence[int], seconds: float, ramp: float) -> DbosRep | str:
    """One repetition, or why there is none."""
    reason = DBOS.unavailable()
    if reason is not None:
        return reason
    command = [str(DBOS.interpreter), str(SCRIPT), "--reps", "1", "--seconds", str(seconds),
               "--ramp", str(ramp), "--clients", *map(str, clients)]  # fmt: skip
    timeout = LAUNCH_S + 2 * len(clients) * (ramp + seconds)
    try:
        done = subprocess.run(
            command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        return f"the DBOS peer did not finish within {timeout:g} s"
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        last = (done.stderr.strip() or "no output").splitlines()[-1]
        return f"the DBOS peer failed ({done.returncode}): {last}"
    out: dict[str, Any] = json.loads(lines[-1])
    rep: dict[str, dict[str, float]] = out["reps"][0]
    return DbosRep(
        rates={int(n): figures["rate"] for n, figures in rep.items()},
        latency_ms={int(n): figures["latency_ms"] for n, figures in rep.items()},
        python=out["python"],
        version=out["dbos"],
        journal_mode=out["journal_mode"],
        synchronous=out["synchronous"],
    )
