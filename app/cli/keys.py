"""``stepline keys create|list|revoke``: API keys, in the database the server uses
(``STEPLINE_DATABASE_URL``). There is no HTTP API for keys: whoever can run this can read
that database."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from ._console import make_console
from .exit_codes import ExitCode

if TYPE_CHECKING:
    from app.security.keys import ApiKeys

__all__ = ["keys"]

T = TypeVar("T")

keys = typer.Typer(
    help="Create, list and revoke API keys.", no_args_is_help=True, add_completion=False
)


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


def _fail(message: str, code: ExitCode) -> typer.Exit:
    make_console(stderr=True).print(f"stepline: {message}", soft_wrap=True)
    return typer.Exit(code)


@keys.command()
def create(
    name: Annotated[str, typer.Option(help="A name to recognise the key by.")],
    scopes: Annotated[
        str, typer.Option(help="Comma-separated: read, run, admin (admin: everything).")
    ],
) -> None:
    """Create a key and print it: this is the only time it is shown."""
    from app.errors import KeyNameTaken

    try:
        text, row = _with_keys(lambda k: k.create(name, [scopes]))
    except (ValueError, KeyNameTaken) as exc:
        raise _fail(str(exc), ExitCode.usage) from exc
    make_console(stderr=True).print(
        f"created key {row.id} ({row.name!r}, scopes: {', '.join(row.scopes)}). "
        "This is the only time it is shown; send it as Authorization: Bearer <key>",
        soft_wrap=True,
    )
    print(text)


@keys.command("list")
def list_keys() -> None:
    """List keys (never their secrets)."""
    rows = _with_keys(lambda k: k.list())
    print(f"{'id':<12}  {'name':<24}  {'scopes':<16}  {'created':<20}  revoked")
    for row in rows:
        revoked = row.revoked_at.strftime("%Y-%m-%d %H:%M:%S") if row.revoked_at else "-"
        created = row.created_at.strftime("%Y-%m-%d %H:%M:%S")
        print(f"{row.id:<12}  {row.name:<24}  {','.join(row.scopes):<16}  {created:<20}  {revoked}")


@keys.command()
def revoke(key: Annotated[str, typer.Argument(help="The key's id or name.")]) -> None:
    """Revoke a key (by id or name); exits 1 when there is no such key."""
    row = _with_keys(lambda k: k.revoke(key))
    if row is None:
        raise _fail(f"no API key with id or name {key!r}", ExitCode.failed)
    assert row.revoked_at is not None
    print(f"revoked key {row.id} ({row.name!r}) at {row.revoked_at.isoformat()}")
