"""``stepline logs``: the lines a run's steps wrote, and with ``-f`` those still to come."""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterator
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.text import Text

from stepline_client import Client, LogLine

from ._console import make_console
from ._format import compact_json, iso, parse_time
from .exit_codes import ExitCode
from .ndjson import write_json
from .remote import ApiKeyOption, Remote, ServerOption, api_errors

__all__ = ["logs"]

PAGE_SIZE = 200  # the API's largest page by default
LEVEL_STYLES = {"debug": "dim", "warning": "yellow", "error": "red", "critical": "bold red"}


def _pages(client: Client, run_id: str, step: str | None) -> Iterator[LogLine]:
    after: int | None = 0
    while after is not None:
        page = client.runs.logs(run_id, step=step, after=after, limit=PAGE_SIZE)
        yield from page.items
        after = page.next_after


class _Printer:
    def __init__(self, console: Console, width: int, as_json: bool) -> None:
        self.console, self.width, self.as_json = console, width, as_json
        self.last_seq = 0

    def line(self, seq: int, data: dict[str, Any]) -> None:
        self.last_seq = max(self.last_seq, seq)
        if self.as_json:
            write_json({"seq": seq, **data})
            return
        level = str(data.get("level") or "info")
        text = Text(f"{iso(parse_time(data.get('time')))}  ", style="dim")
        text.append(f"{data.get('step') or '-':<{self.width}}  ")
        text.append(f"{level:<7}  ", style=LEVEL_STYLES.get(level, ""))
        text.append(str(data.get("event") or ""))
        if data.get("data"):
            text.append(f"  {compact_json(data['data'])}")
        self.console.print(text, soft_wrap=True)


def logs(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(help="The run whose logs to print.", metavar="RUN_ID")],
    step: Annotated[str | None, typer.Option("--step", help="Only this step's lines.")] = None,
    follow_logs: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new lines until the run ends.")
    ] = False,
    tail: Annotated[
        int | None,
        typer.Option("--tail", "-n", min=0, metavar="N", help="Only the last N lines so far."),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object per line, as the API has them.")
    ] = False,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Print a run's log lines, oldest first; -f follows them until the run ends."""
    remote = Remote.of(ctx, server, api_key)
    err = make_console(stderr=True)
    with remote.client() as client, api_errors(remote, err):
        run = client.runs.get(run_id)
        width = max([len(s.name) for s in run.steps if step in (None, s.name)] or [1])
        printer = _Printer(make_console(), width, as_json)
        kept: deque[LogLine] = deque(maxlen=tail)
        for line in _pages(client, run_id, step):
            if tail is None:
                printer.line(line.seq, json.loads(line.model_dump_json(exclude={"seq"})))
            else:  # the lines left out still count as seen
                kept.append(line)
                printer.last_seq = line.seq
        for line in kept:
            printer.line(line.seq, json.loads(line.model_dump_json(exclude={"seq"})))
        if not follow_logs or run.finished:
            return
        try:
            for event in client.runs.events(run_id, last_event_id=printer.last_seq):
                data = event.data if isinstance(event.data, dict) else {}
                if event.type == "step.log" and step in (None, data.get("step")):
                    printer.line(event.seq or 0, {k: v for k, v in data.items() if k in _FIELDS})
        except KeyboardInterrupt:
            raise typer.Exit(ExitCode.interrupted) from None


_FIELDS = ("time", "step", "level", "event", "data")
