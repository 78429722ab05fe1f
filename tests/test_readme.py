"""The README's examples run as written."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path
from typing import Any

README = Path(__file__).resolve().parent.parent / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def test_the_step_library_example_runs_and_prints_weighted_progress() -> None:
    namespace: dict[str, Any] = {"__name__": "readme_example"}
    printed = io.StringIO()

    with contextlib.redirect_stdout(printed):
        exec(compile(python_blocks()[0], "README.md", "exec", dont_inherit=True), namespace)

    assert namespace["orchestrator"].execute() == {
        "success": True,
        "steps_executed": 2,
        "steps_total": 2,
    }
    assert printed.getvalue().splitlines() == ["20.0 100", "60.0 100", "100.0 100"]


def test_the_quick_start_is_make_serve_and_make_test() -> None:
    quick_start = README.read_text(encoding="utf-8").split("## Quick start")[1].split("##")[0]

    assert re.findall(r"^make \w+", quick_start, re.M) == ["make serve", "make test"]
