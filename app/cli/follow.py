"""Following a run to its end (``run -f``, ``watch``, ``cancel --wait``): its events drawn by
one of three renderers, and the exit code that tells the outcome.

- a terminal: ``LiveRenderer`` (redrawn in place, on stderr), then the report on stdout;
- anything else, or ``--plain``: ``PlainRenderer`` (a line per transition, on stderr), then
  the report on stdout;
- ``--json``: ``NdjsonRenderer`` (events, then the final run, on stdout).

``--timeout`` stops following (exit 124) and Ctrl-C detaches (exit 130); neither touches
the run, and both print the command that re-attaches.
"""

from __future__ import annotations

from typing import Literal, Protocol

import httpx
import typer
from rich.console import Console
from rich.text import Text

from stepline_client import Client, Event, Run

from ._console import Glyphs, glyphs_for, live_capable, make_console
from .exit_codes import ExitCode, for_status
from .live import LiveRenderer
from .ndjson import NdjsonRenderer, write_json
from .plain import PlainRenderer
from .remote import Remote, api_errors
from .report import print_report
from .state import RunState

__all__ = ["Output", "choose_output", "follow"]

Output = Literal["live", "plain", "json"]


class Renderer(Protocol):
    state: RunState

    def __enter__(self) -> Renderer: ...

    def __exit__(self, *exc: object) -> None: ...

    def event(self, event: Event) -> None: ...

    def finish(self, run: Run) -> None: ...


def choose_output(as_json: bool, plain: bool, err: Console) -> Output:
    if as_json:
        return "json"
    return "live" if not plain and live_capable(err) else "plain"


def _renderer(output: Output, err: Console, glyphs: Glyphs) -> Renderer:
    if output == "json":
        return NdjsonRenderer()
    if output == "live":
        return LiveRenderer(err, glyphs)
    return PlainRenderer(err, glyphs)


def follow(
    client: Client,
    remote: Remote,
    run_id: str,
    *,
    output: Output,
    timeout: float | None = None,
    pipeline: str | None = None,
    header: bool = True,
    created: Run | None = None,
) -> ExitCode:
    """Follow run ``run_id`` until it ends and report it; returns the exit code. With the
    run as ``created`` (just now, by this command) every transition since is shown, not
    only those after the stream opens: a quick run may be half done by then."""
    out, err = make_console(), make_console(stderr=True)
    glyphs = glyphs_for(err)
    renderer = _renderer(output, err, glyphs)
    watch = remote.command("watch", run_id)
    if header and output != "json":
        name = f" ({pipeline})" if pipeline else ""
        err.print(Text(f"Run {run_id}{name} {glyphs.dot} {remote.run_url(run_id)}"), soft_wrap=True)
    try:
        with api_errors(remote, err), renderer:
            resume = None
            if created is not None:
                snapshot = created.model_dump(mode="json")
                resume = created.last_event_id
                renderer.event(Event(type="run.snapshot", id=str(resume), data=snapshot))
            for event in client.runs.events(run_id, resume, timeout=timeout):
                renderer.event(event)
            final = client.runs.get(run_id)
            renderer.finish(final)
    except TimeoutError:
        with api_errors(remote, err):
            final = client.runs.get(run_id)
        if output == "json":
            write_json(final.model_dump(mode="json"))
        if not final.finished:  # else it ended just as time ran out: report it as usual
            err.print(
                Text(f"stopped following after the timeout; run {run_id} goes on "
                     f"({final.status}). Re-attach: {watch}"),
                soft_wrap=True,
            )  # fmt: skip
            return ExitCode.timeout
    except KeyboardInterrupt:
        err.print(
            Text(f"detached; run {run_id} goes on ({renderer.state.status}), it was not "
                 f"cancelled. Re-attach: {watch}"),
            soft_wrap=True,
        )  # fmt: skip
        return ExitCode.interrupted
    except typer.Exit as exc:
        if isinstance(exc.__cause__, httpx.HTTPError):
            err.print(Text(f"Re-attach: {watch}"), soft_wrap=True)
        raise
    if output != "json":
        print_report(out, final, glyphs, remote)
    return for_status(final.status)
