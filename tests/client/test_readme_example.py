"""The README's client example runs as written against a real server."""

from __future__ import annotations

import contextlib
import io

from tests.test_readme import python_blocks


def test_the_client_example_prints_the_events_and_the_failed_run(base_url: str) -> None:
    (block,) = [b for b in python_blocks() if "stepline_client" in b]
    printed = io.StringIO()

    with contextlib.redirect_stdout(printed):
        code = block.replace("http://127.0.0.1:8000", base_url)
        exec(compile(code, "README.md", "exec", dont_inherit=True), {"__name__": "readme"})

    lines = printed.getvalue().splitlines()
    assert lines[0].endswith(" run.snapshot")
    assert lines[-2].endswith(" run.failed")
    assert lines[-1] == (
        "failed [('a', 'succeeded', 'rolled_back'), ('b', 'failed', 'rolled_back'), "
        "('c', 'pending', 'not_needed')]"
    )
