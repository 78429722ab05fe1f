"""The ``stepline`` command: its global options, its commands, and ``main``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

import typer

from . import logs, openapi, runs, server, views
from .keys import keys
from .remote import DEFAULT_URL, KEY_ENV, URL_ENV, Remote

__all__ = ["cli", "main"]

cli = typer.Typer(
    name="stepline",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="markdown",
    # Locals would flood the terminal and could print an API key (TYPER_STANDARD_TRACEBACK=1
    # gives Python's own traceback).
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@cli.callback()
def _options(
    ctx: typer.Context,
    server_url: Annotated[
        str,
        typer.Option("--server", envvar=URL_ENV, metavar="URL", help="The Stepline API."),
    ] = DEFAULT_URL,
    api_key: Annotated[
        str | None,
        typer.Option(
            "--api-key",
            envvar=KEY_ENV,
            metavar="KEY",
            help="Sent as Authorization: Bearer KEY.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Step pipelines over HTTP: serve them, start runs, follow their progress and rollback.

    Exit codes: 0 succeeded, 1 run failed, 2 usage, 3 run cancelled, 4 API or connection
    error, 124 --timeout reached (the run goes on), 130 Ctrl-C (detached; the run goes on).
    """
    ctx.obj = Remote(server_url.rstrip("/"), api_key)


cli.command("serve")(server.serve)
cli.command("run")(runs.run)
cli.command("watch")(runs.watch)
cli.command("runs")(views.runs)
cli.command("show")(views.show)
cli.command("cancel")(runs.cancel)
cli.command("logs")(logs.logs)
cli.command("pipelines")(views.pipelines)
cli.command("demo")(server.demo)
cli.command("openapi")(openapi.openapi)
cli.add_typer(keys, name="keys")


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``stepline`` with ``argv`` (the process's arguments by default); returns the exit
    code instead of exiting, so that it can be called in-process."""
    try:
        cli(args=list(argv) if argv is not None else None, prog_name="stepline")
    except SystemExit as exc:
        code = exc.code
        if code is None:
            return 0
        return code if isinstance(code, int) else 1
    return 0
