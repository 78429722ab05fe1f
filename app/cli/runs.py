"""``stepline run``, ``watch`` and ``cancel``: start, follow and stop runs."""

from __future__ import annotations

from typing import Annotated

import httpx
import typer
from rich.text import Text

from stepline_client import Client, Run, SteplineError

from ._console import glyphs_for, make_console
from .follow import choose_output, follow
from .inputs import parse_duration, parse_labels, parse_params, read_params_file
from .ndjson import write_json
from .remote import ApiKeyOption, Remote, ServerOption, api_errors

__all__ = ["cancel", "run", "watch"]

TimeoutOption = Annotated[
    str | None,
    typer.Option(
        "--timeout",
        metavar="DURATION",
        help="Stop following after this long (90s, 10m, 1h) and exit 124; the run goes on.",
        show_default=False,
    ),
]
JsonOption = Annotated[
    bool,
    typer.Option(
        "--json",
        help="NDJSON on stdout: every event as {type, seq, data}, then the final run.",
    ),
]
PlainOption = Annotated[
    bool,
    typer.Option("--plain", help="One line per transition even on a terminal (what a pipe gets)."),
]


def run(
    ctx: typer.Context,
    pipeline: Annotated[
        str,
        typer.Argument(help="The pipeline to run (see stepline pipelines).", metavar="PIPELINE"),
    ],
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param",
            "-p",
            metavar="KEY=VALUE",
            help="A parameter; repeat for more. VALUE is read as JSON when it parses as JSON "
            '(3, 0.5, true, null, [1,2], {...}, "007"), else taken as a string: '
            "-p name=alice is the string alice. Overrides --params-file.",
            show_default=False,
        ),
    ] = None,
    params_file: Annotated[
        str | None,
        typer.Option(
            "--params-file",
            metavar="FILE",
            help="Parameters as a JSON object in FILE, or - for standard input.",
            show_default=False,
        ),
    ] = None,
    label: Annotated[
        list[str] | None,
        typer.Option(
            "--label",
            "-l",
            metavar="KEY=VALUE",
            help="A label (a string); repeat for more.",
            show_default=False,
        ),
    ] = None,
    idempotency_key: Annotated[
        str | None,
        typer.Option(
            "--idempotency-key",
            metavar="KEY",
            help="Send this Idempotency-Key: a repeat with the same key and body starts no "
            "second run. A random one is sent by default.",
            show_default=False,
        ),
    ] = None,
    follow_run: Annotated[
        bool,
        typer.Option("--follow", "-f", help="Follow the run to its end; exit with its outcome."),
    ] = False,
    timeout: TimeoutOption = None,
    as_json: JsonOption = False,
    plain: PlainOption = False,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Start a run of PIPELINE.

    Prints the run's id on stdout (and where to see it on stderr). With --follow, draws its
    progress and exits with its outcome: 0 succeeded, 1 failed, 3 cancelled.
    """
    remote = Remote.of(ctx, server, api_key)
    base = read_params_file(params_file) if params_file is not None else None
    params = parse_params(param or [], base)
    labels = parse_labels(label or [])
    seconds = parse_duration(timeout)
    if seconds is not None and not follow_run:
        raise typer.BadParameter("only applies with --follow", param_hint="--timeout")
    out, err = make_console(), make_console(stderr=True)
    with remote.client() as client:
        with api_errors(remote, err):
            created = client.runs.create(pipeline, params, labels, idempotency_key)
        if not follow_run:
            if as_json:
                write_json(created.model_dump(mode="json"))
                return
            out.print(created.id)
            glyphs = glyphs_for(err)
            err.print(
                Text(f"started run {created.id} ({created.pipeline}) {glyphs.dot} "
                     f"{remote.run_url(created.id)}\n"
                     f"follow it: {remote.command('watch', created.id)}"),
                soft_wrap=True,
            )  # fmt: skip
            return
        output = choose_output(as_json, plain, err)
        code = follow(client, remote, created.id, output=output, timeout=seconds,
                      pipeline=created.pipeline, created=created)  # fmt: skip
    raise typer.Exit(code)


def watch(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(help="The run to follow.", metavar="RUN_ID")],
    timeout: TimeoutOption = None,
    as_json: JsonOption = False,
    plain: PlainOption = False,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Follow a run to its end and exit with its outcome.

    Starts from where the run is now; exits 0 succeeded, 1 failed, 3 cancelled. Ctrl-C
    detaches (exit 130) and leaves the run alone.
    """
    remote = Remote.of(ctx, server, api_key)
    seconds = parse_duration(timeout)
    err = make_console(stderr=True)
    with remote.client() as client:
        with api_errors(remote, err):
            found = client.runs.get(run_id)
        output = choose_output(as_json, plain, err)
        code = follow(client, remote, run_id, output=output, timeout=seconds,
                      pipeline=found.pipeline)  # fmt: skip
    raise typer.Exit(code)


def _plan(client: Client, run: Run) -> tuple[list[str], list[str]]:
    """What a cancel of ``run`` will undo, newest first, and the started steps that have
    nothing to undo (or are kept behind an irreversible step)."""
    started = [s for s in run.steps if s.status in ("succeeded", "running", "failed")]
    try:
        pivots = {s.name for s in client.pipelines.get(run.pipeline).steps if s.irreversible}
    except (SteplineError, httpx.HTTPError):  # a nicety: the cancel itself went through
        pivots = set()
    last_pivot = max(
        (s.index for s in started if s.name in pivots and s.status == "succeeded"), default=-1
    )
    undo = [s for s in reversed(started) if s.index > last_pivot]
    return [s.name for s in undo if s.can_rollback], [
        s.name for s in reversed(started) if s not in undo or not s.can_rollback
    ]


def cancel(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(help="The run to cancel.", metavar="RUN_ID")],
    wait: Annotated[
        bool,
        typer.Option("--wait", help="Follow the cancel and the rollback to the end; exit 3."),
    ] = False,
    rollback: Annotated[
        bool,
        typer.Option(
            "--rollback/--no-rollback", help="Undo the steps that completed (the default)."
        ),
    ] = True,
    timeout: TimeoutOption = None,
    as_json: JsonOption = False,
    plain: PlainOption = False,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Cancel a run and print what will roll back.

    With --wait, follows the cancel and the rollback, and exits 3 once the run is cancelled
    (0 or 1 if it ended otherwise first).
    """
    remote = Remote.of(ctx, server, api_key)
    seconds = parse_duration(timeout)
    if seconds is not None and not wait:
        raise typer.BadParameter("only applies with --wait", param_hint="--timeout")
    out, err = make_console(), make_console(stderr=True)
    glyphs = glyphs_for(out)
    with remote.client() as client:
        with api_errors(remote, err):
            cancelled = client.runs.cancel(run_id, rollback=rollback)
            undo, nothing = _plan(client, cancelled)
        if as_json and not wait:
            write_json(cancelled.model_dump(mode="json"))
            return
        line = f"cancel requested for run {run_id} {glyphs.dot} "
        if cancelled.status == "cancelled":
            line = f"cancelled run {run_id} before it started {glyphs.dot} nothing to roll back"
        elif not rollback:
            line += "completed steps are kept (--no-rollback)"
        elif undo:
            line += f"will roll back: {', '.join(undo)}"
            line += f" {glyphs.dot} nothing to undo: {', '.join(nothing)}" if nothing else ""
        else:
            line += "nothing to roll back"
            line += f" (no rollback defined: {', '.join(nothing)})" if nothing else ""
        (err if as_json else out).print(Text(line), soft_wrap=True)
        if not wait:
            return
        output = choose_output(as_json, plain, err)
        code = follow(client, remote, run_id, output=output, timeout=seconds, header=False)
    raise typer.Exit(code)
