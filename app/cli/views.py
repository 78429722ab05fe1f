"""``stepline runs``, ``show`` and ``pipelines``: what the server has, as tables or JSON."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from app.states import RunStatus
from stepline_client import Run

from ._console import glyphs_for, make_console
from .inputs import parse_labels
from .remote import ApiKeyOption, Remote, ServerOption, api_errors
from .render import pipeline_details, pipelines_table, print_table, run_details, runs_table

__all__ = ["pipelines", "runs", "show"]

DEFAULT_LIMIT = 20


def _print_json(value: object) -> None:
    make_console().print(json.dumps(value, indent=2, ensure_ascii=False), soft_wrap=True)


def runs(
    ctx: typer.Context,
    pipeline: Annotated[
        str | None, typer.Option("--pipeline", help="Only runs of this pipeline.")
    ] = None,
    status: Annotated[
        list[RunStatus] | None,
        typer.Option("--status", "-s", help="Only runs in this status; repeat for several."),
    ] = None,
    label: Annotated[
        list[str] | None,
        typer.Option(
            "--label", "-l", metavar="KEY=VALUE", help="Only runs with this label; repeat: all."
        ),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many runs.")] = (
        DEFAULT_LIMIT
    ),
    as_json: Annotated[bool, typer.Option("--json", help="A JSON array of runs.")] = False,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """List runs, newest first."""
    remote = Remote.of(ctx, server, api_key)
    labels = parse_labels(label or [])
    err = make_console(stderr=True)
    # The API filters on one status at a time: several are one request each, merged.
    statuses: list[str | None] = [s.value for s in status] if status else [None]
    found: dict[str, Run] = {}
    with remote.client() as client, api_errors(remote, err):
        for one in statuses:
            page = client.runs.list(pipeline=pipeline, status=one, labels=labels, limit=limit)
            found.update((r.id, r) for r in page.items)
    # Run ids sort by creation time, like the API's own order.
    listed = sorted(found.values(), key=lambda r: (r.created_at, r.id), reverse=True)[:limit]
    if as_json:
        _print_json([r.model_dump(mode="json") for r in listed])
        return
    out = make_console()
    if not listed:
        err.print("no runs", style="dim")
        return
    print_table(out, runs_table(listed, glyphs_for(out)))


def show(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(help="The run to show.", metavar="RUN_ID")],
    as_json: Annotated[
        bool, typer.Option("--json", help="The run as GET /runs/{id} returns it.")
    ] = False,
    traceback: Annotated[
        bool, typer.Option("--traceback", help="Print the failed step's full traceback.")
    ] = False,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Show a run: its steps and their rollback, its error, outcome and next commands."""
    remote = Remote.of(ctx, server, api_key)
    err = make_console(stderr=True)
    with remote.client() as client, api_errors(remote, err):
        found = client.runs.get(run_id)
    if as_json:
        _print_json(found.model_dump(mode="json"))
        return
    out = make_console()
    run_details(out, found, glyphs_for(out), remote, traceback)


def pipelines(
    ctx: typer.Context,
    name: Annotated[
        str | None, typer.Argument(help="Show this pipeline in detail.", show_default=False)
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="As the API returns it.")] = False,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """List the pipelines, or show one: steps, weights, rollback and parameters."""
    remote = Remote.of(ctx, server, api_key)
    err, out = make_console(stderr=True), make_console()
    with remote.client() as client, api_errors(remote, err):
        if name is None:
            catalogue = client.pipelines.list()
        else:
            one = client.pipelines.get(name)
    if name is None:
        if as_json:
            _print_json([p.model_dump(mode="json") for p in catalogue])
        else:
            print_table(out, pipelines_table(catalogue))
        return
    if as_json:
        _print_json(one.model_dump(mode="json"))
    else:
        pipeline_details(out, one, remote)
