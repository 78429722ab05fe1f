"""The combined table of ``run_all.py`` and the record of what it ran on, as Markdown."""

from __future__ import annotations

import math
import os
import platform
import subprocess
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from _harness import PROJECT_ROOT, Summary
from _peers import PEERS

PINNED = ("fastapi", "uvicorn", "starlette", "sse-starlette", "pydantic")
COLUMNS = ("benchmark", "measure", "unit", "median", "min", "max", "baseline",
           "baseline median", "ratio", "target", "result", "note")  # fmt: skip


def number(value: float | None) -> str:
    if value is None:
        return "—"
    if math.isnan(value):
        return "nan"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def result(line: Summary) -> str:
    if line.skipped:
        return "SKIPPED"
    if line.passed is None:
        return "—"
    return "PASS" if line.passed else "FAIL"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def table(lines: Sequence[Summary]) -> list[str]:
    """One Markdown row per line; a skipped line's reason goes in its note."""
    out = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for x in lines:
        ratio = "—" if x.ratio is None else f"{number(x.ratio)}x"
        note = "; ".join(filter(None, [x.note, f"skipped: {x.skipped}" if x.skipped else ""]))
        cells = [x.benchmark, x.measure, x.unit, number(x.median), number(x.min),
                 number(x.max), x.baseline or "—", number(x.baseline_median), ratio,
                 x.target or "—", result(x), note]  # fmt: skip
        out.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return out


def _version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def _commit() -> str:
    try:
        done = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=10, check=False,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return done.stdout.strip() or "unknown"


def environment(load_before: tuple[float, float, float]) -> list[str]:
    """What the figures were measured on: versions, interpreters, cores and load."""
    stepline = ", ".join(f"{name} {_version(name)}" for name in PINNED)
    lines = [
        f"- Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; source: {_commit()}",
        f"- Stepline: Python {platform.python_version()}; {stepline}",
    ]
    for peer in PEERS.values():
        found = peer.installed_version()
        what = f"{peer.package} {found}" if found else f"{peer.package} not installed"
        lines.append(f"- Peer {peer.name}: {what} (pinned {peer.version}), "
                     f"Python {peer.python_version() or '—'}")  # fmt: skip
    after = os.getloadavg()
    lines += [
        f"- Cores (os.cpu_count()): {os.cpu_count()}; {platform.machine()}, "
        f"{platform.system()} {platform.release()}",
        f"- Load average (1, 5, 15 min): {_load(load_before)} before, {_load(after)} after",
    ]
    return lines


def _load(values: tuple[float, float, float]) -> str:
    return " / ".join(f"{v:.2f}" for v in values)


def document(
    lines: Sequence[Summary],
    load_before: tuple[float, float, float],
    runs: Sequence[dict[str, Any]],
) -> str:
    """RESULTS.md: the table, what it ran on, and how each benchmark was run."""
    parts = [
        "# Benchmark results",
        "",
        "Written by `make bench` (`bench/run_all.py`). Each figure is the median over the",
        "repetitions, with min and max; each baseline ran in the same run, and each ratio is",
        "Stepline's figure over the baseline's (the median of per-repetition ratios where the",
        "two were measured together). The machine may be shared: compare ratios, not times.",
        "",
        *table(lines),
        "",
        "## Environment",
        "",
        *environment(load_before),
        "",
        "## Runs",
        "",
    ]
    for run in runs:
        parts.append(f"- `{run['command']}`: {run['status']} in {run['seconds']:.0f} s")
    return "\n".join(parts) + "\n"
