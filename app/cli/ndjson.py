"""``--json`` while following: the API's events as NDJSON on stdout, the run last.

Each event is one line ``{"type": ..., "seq": ..., "data": ...}`` (``data`` as the API sent
it; for ``run.snapshot`` it is the run), in stream order; the last line is the run itself,
as ``GET /runs/{id}`` returns it once the stream has ended.
"""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO

from stepline_client import Event, Run

from .state import RunState

__all__ = ["NdjsonRenderer", "write_json"]


def write_json(value: Any, out: TextIO | None = None) -> None:
    """One compact JSON document on a line of its own, flushed at once."""
    stream = out or sys.stdout
    stream.write(json.dumps(value, ensure_ascii=False, separators=(",", ":")) + "\n")
    stream.flush()


class NdjsonRenderer:
    """Writes every event as it arrives; the final run is written by ``finish``."""

    def __init__(self) -> None:
        self.state = RunState()

    def __enter__(self) -> NdjsonRenderer:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def event(self, event: Event) -> None:
        self.state.apply(event)
        write_json({"type": event.type, "seq": event.seq, "data": event.data})

    def finish(self, run: Run) -> None:
        write_json(run.model_dump(mode="json"))
