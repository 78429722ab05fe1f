"""``stepline serve`` and ``stepline demo``: the commands that run the service's own code.

They import the app lazily, so that the client commands start without loading it.
"""

from __future__ import annotations

import math
from enum import StrEnum
from types import FrameType
from typing import Annotated

import typer

from ._console import make_console
from .exit_codes import ExitCode

__all__ = ["DemoName", "demo", "serve"]


def serve(
    host: Annotated[
        str | None,
        typer.Option(
            help="Address to bind (default 127.0.0.1, or STEPLINE_HOST).", show_default=False
        ),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(help="Port to bind (default 8000, or STEPLINE_PORT).", show_default=False),
    ] = None,
) -> None:
    """Serve the API; every setting comes from STEPLINE_* variables."""
    import uvicorn

    from app.access_log import log_config
    from app.main import create_app
    from app.pipelines.loading import PipelineLoadError
    from app.serving import deadline_protocol
    from app.settings import Settings, SettingsError

    overrides = {k: v for k, v in (("host", host), ("port", port)) if v is not None}
    settings = Settings(**overrides)  # type: ignore[arg-type]
    try:
        application = create_app(settings)
    except (PipelineLoadError, SettingsError) as exc:
        make_console(stderr=True).print(f"stepline: {exc}", soft_wrap=True)
        raise typer.Exit(ExitCode.usage) from exc
    services = application.state.services

    class Server(uvicorn.Server):
        # At the signal, not after the connections close: open streams get their final
        # event and new runs a 503 while uvicorn waits for the requests in flight.
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            services.request_shutdown()
            super().handle_exit(sig, frame)

    config = uvicorn.Config(
        application,
        host=settings.host,
        port=settings.port,
        http=deadline_protocol(settings.request_timeout_seconds),
        limit_concurrency=settings.limit_concurrency or None,
        timeout_graceful_shutdown=math.ceil(settings.graceful_shutdown_seconds),
        proxy_headers=False,
        server_header=False,
        log_config=log_config(),
    )
    Server(config).run()


class DemoName(StrEnum):
    """The built-in demo pipelines."""

    flaky = "flaky"
    train = "train"
    upload = "upload"


def demo(
    pipeline: Annotated[DemoName, typer.Argument(help="The demo to run.")] = DemoName.train,
    step_seconds: Annotated[float, typer.Option(help="How long each step takes.")] = 1.0,
) -> None:
    """Run a demo pipeline in this terminal, without a server (exit 1 if it fails)."""
    from app.demo import run_demo

    code = run_demo(pipeline.value, step_seconds)
    if code:
        raise typer.Exit(code)
