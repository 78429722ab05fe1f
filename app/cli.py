"""The ``stepline`` command: ``serve``, ``keys``, ``demo`` and ``openapi``."""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from app.security.keys import ApiKeys
    from app.settings import Settings

T = TypeVar("T")

__all__ = ["main", "openapi_document", "openapi_text"]

DEFAULT_OPENAPI_PATH = "openapi.json"


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from app.main import create_app
    from app.pipelines.loading import PipelineLoadError
    from app.serving import deadline_protocol
    from app.settings import Settings, SettingsError

    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    settings = Settings(**overrides)
    try:
        application = create_app(settings)
    except (PipelineLoadError, SettingsError) as exc:
        print(f"stepline: {exc}", file=sys.stderr)
        return 2
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
    )
    Server(config).run()
    return 0


def _with_keys(action: Callable[[ApiKeys], Awaitable[T]]) -> T:
    from app.security.keys import ApiKeys
    from app.settings import Settings
    from app.store import open_store

    async def run() -> T:
        store = open_store(Settings().database_url)
        await store.start()
        try:
            return await action(ApiKeys(store))
        finally:
            await store.close()

    return asyncio.run(run())


def _keys_create(args: argparse.Namespace) -> int:
    from app.errors import KeyNameTaken

    try:
        text, row = _with_keys(lambda keys: keys.create(args.name, [args.scopes]))
    except (ValueError, KeyNameTaken) as exc:
        print(f"stepline: {exc}", file=sys.stderr)
        return 2
    print(
        f"created key {row.id} ({row.name!r}, scopes: {', '.join(row.scopes)}). "
        "This is the only time it is shown; send it as Authorization: Bearer <key>",
        file=sys.stderr,
    )
    print(text)
    return 0


def _keys_revoke(args: argparse.Namespace) -> int:
    row = _with_keys(lambda keys: keys.revoke(args.key))
    if row is None:
        print(f"stepline: no API key with id or name {args.key!r}", file=sys.stderr)
        return 1
    assert row.revoked_at is not None
    print(f"revoked key {row.id} ({row.name!r}) at {row.revoked_at.isoformat()}")
    return 0


def _keys_list(args: argparse.Namespace) -> int:
    rows = _with_keys(lambda keys: keys.list())
    print(f"{'id':<12}  {'name':<24}  {'scopes':<16}  {'created':<20}  revoked")
    for row in rows:
        revoked = row.revoked_at.strftime("%Y-%m-%d %H:%M:%S") if row.revoked_at else "-"
        created = row.created_at.strftime("%Y-%m-%d %H:%M:%S")
        print(f"{row.id:<12}  {row.name:<24}  {','.join(row.scopes):<16}  {created:<20}  {revoked}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from app.demo import run_demo

    return run_demo(args.pipeline, args.step_seconds)


def _contract_settings() -> Settings:
    # The contract must not change with the machine it is generated on: only the values given
    # here count, never STEPLINE_* variables. Nothing connects to the database.
    from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

    from app.settings import Settings

    class ContractSettings(Settings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            return (init_settings,)

    return ContractSettings(pipelines=[], demo_pipelines=True, entry_points=False)


def openapi_document() -> dict[str, Any]:
    """The app's OpenAPI document, built with fixed settings (demos on, nothing else)."""
    from app.main import create_app

    return create_app(_contract_settings()).openapi()


def openapi_text() -> str:
    """``openapi_document()`` as committed in ``openapi.json``: FastAPI's key order, indented."""
    return json.dumps(openapi_document(), indent=2, ensure_ascii=False) + "\n"


def _openapi(args: argparse.Namespace) -> int:
    data = openapi_text().encode()
    if args.output == "-":
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        Path(args.output).write_bytes(data)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="stepline", description="Step pipelines over HTTP.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve the API (settings from STEPLINE_*)")
    serve.add_argument("--host", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to bind (default 8000)")
    serve.set_defaults(func=_serve)
    keys = commands.add_parser("keys", help="create, list and revoke API keys")
    key_commands = keys.add_subparsers(dest="keys_command", required=True)
    create = key_commands.add_parser("create", help="create a key and print it (only now)")
    create.add_argument("--name", required=True, help="a name to recognise the key by")
    create.add_argument(
        "--scopes", required=True, help="comma-separated: read, run, admin (admin: everything)"
    )
    create.set_defaults(func=_keys_create)
    revoke = key_commands.add_parser("revoke", help="revoke a key (by id or name)")
    revoke.add_argument("key", help="the key's id or name")
    revoke.set_defaults(func=_keys_revoke)
    listing = key_commands.add_parser("list", help="list keys (never their secrets)")
    listing.set_defaults(func=_keys_list)
    demo = commands.add_parser("demo", help="run a demo pipeline in the terminal")
    demo.add_argument("pipeline", nargs="?", default="train", choices=["flaky", "train", "upload"])
    demo.add_argument("--step-seconds", type=float, default=1.0)
    demo.set_defaults(func=_demo)
    openapi = commands.add_parser("openapi", help="write the OpenAPI document of the API")
    openapi.add_argument(
        "output",
        nargs="?",
        default=DEFAULT_OPENAPI_PATH,
        help=f"file to write, or - for stdout (default {DEFAULT_OPENAPI_PATH})",
    )
    openapi.set_defaults(func=_openapi)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
