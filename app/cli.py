"""The ``stepline`` command: ``stepline serve`` and ``stepline demo``."""

from __future__ import annotations

import argparse
import sys

__all__ = ["main"]


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from app.main import create_app
    from app.settings import Settings

    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    settings = Settings(**overrides)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        timeout_graceful_shutdown=int(settings.graceful_shutdown_seconds) or None,
        proxy_headers=False,
        server_header=False,
    )
    return 0


def _demo(args: argparse.Namespace) -> int:
    from app.demo import run_demo

    return run_demo(args.pipeline, args.step_seconds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="stepline", description="Step pipelines over HTTP.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve the API (settings from STEPLINE_*)")
    serve.add_argument("--host", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to bind (default 8000)")
    serve.set_defaults(func=_serve)
    demo = commands.add_parser("demo", help="run a demo pipeline in the terminal")
    demo.add_argument("pipeline", nargs="?", default="train", choices=["flaky", "train", "upload"])
    demo.add_argument("--step-seconds", type=float, default=1.0)
    demo.set_defaults(func=_demo)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
