"""The server ``stepline`` talks to, and how its errors end a command (exit code 4).

Every command that reaches a server goes through ``stepline_client``: the public HTTP API,
nothing else.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated

import httpx
import typer
from rich.console import Console
from rich.text import Text

from stepline_client import Client, SteplineError, Unauthorized

from .exit_codes import ExitCode

__all__ = ["DEFAULT_URL", "ApiKeyOption", "Remote", "ServerOption", "api_errors"]

DEFAULT_URL = "http://127.0.0.1:8000"
URL_ENV = "STEPLINE_URL"
KEY_ENV = "STEPLINE_API_KEY"
REQUEST_SECONDS = 10.0

# Accepted after the command too (``stepline runs --server URL``), where people type them.
ServerOption = Annotated[
    str | None,
    typer.Option(
        "--server",
        metavar="URL",
        help=f"The Stepline API (default: ${URL_ENV}, else {DEFAULT_URL}).",
        show_default=False,
    ),
]
ApiKeyOption = Annotated[
    str | None,
    typer.Option(
        "--api-key",
        metavar="KEY",
        help=f"Sent as Authorization: Bearer KEY (default: ${KEY_ENV}).",
        show_default=False,
    ),
]


@dataclass(frozen=True)
class Remote:
    """Where the API is (``--server``) and the key to send (``--api-key``)."""

    url: str = DEFAULT_URL
    api_key: str | None = None

    @classmethod
    def of(cls, ctx: typer.Context, url: str | None = None, api_key: str | None = None) -> Remote:
        """The remote of the command's own options, else of the root command's."""
        found = ctx.find_object(Remote) or cls()
        return cls((url or found.url).rstrip("/"), api_key or found.api_key)

    def client(self) -> Client:
        return Client(self.url, api_key=self.api_key or None, timeout=REQUEST_SECONDS)

    def run_url(self, run_id: str) -> str:
        """The run's page in the dashboard."""
        return f"{self.url.rstrip('/')}/ui/runs/{run_id}"

    def command(self, *args: str) -> str:
        """A ``stepline`` command line to suggest, naming the server when it is neither the
        default nor ``$STEPLINE_URL``, so that it works when pasted."""
        words = ["stepline"]
        if self.url != os.environ.get(URL_ENV, DEFAULT_URL):
            words += ["--server", self.url]
        return " ".join([*words, *args])


def _message(exc: Exception, remote: Remote) -> str:
    if isinstance(exc, Unauthorized):
        hint = "pass --api-key or set STEPLINE_API_KEY" if not remote.api_key else "check the key"
        return f"{exc} ({hint})"
    if isinstance(exc, SteplineError):
        errors = exc.problem.get("errors") or []
        fields = [
            f"  {'.'.join(str(p) for p in e.get('loc', []))}: {e.get('msg', '')}"
            for e in errors
            if isinstance(e, dict)
        ]
        return "\n".join([str(exc), *fields])
    if isinstance(exc, httpx.ConnectError):
        return f"cannot reach {remote.url}: {exc or 'connection refused'}"
    if isinstance(exc, httpx.TimeoutException):
        return f"{remote.url} did not answer in time"
    return f"{remote.url}: {exc}"


@contextmanager
def api_errors(remote: Remote, console: Console) -> Iterator[None]:
    """Turn an error answer or a connection failure into a message and exit code 4."""
    try:
        yield
    except (SteplineError, httpx.HTTPError) as exc:
        console.print(Text(f"stepline: {_message(exc, remote)}", style="red"), soft_wrap=True)
        raise typer.Exit(ExitCode.api_error) from exc
