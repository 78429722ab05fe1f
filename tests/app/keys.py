"""API keys for service tests: created through the app's own key service."""

from __future__ import annotations

from fastapi import FastAPI

from app.api.deps import Services
from app.security.keys import ApiKeys
from app.store import open_store

__all__ = ["Clock", "bearer", "create_key", "stored_keys"]


def _services(app: FastAPI) -> Services:
    return app.state.services  # type: ignore[no-any-return]


async def create_key(app: FastAPI, name: str, *scopes: str) -> str:
    """A new key of ``app`` with ``scopes``; its text."""
    text, _row = await _services(app).auth.keys.create(name, scopes)
    return text


async def stored_keys(url: str, *names_and_scopes: tuple[str, tuple[str, ...]]) -> list[str]:
    """Keys created on the database of ``url`` by a store of their own (as ``stepline keys
    create`` does), for an app that another thread or process serves; their texts."""
    store = open_store(url)
    await store.start()
    try:
        keys = ApiKeys(store)
        return [(await keys.create(name, scopes))[0] for name, scopes in names_and_scopes]
    finally:
        await store.close()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


class Clock:
    """A clock that moves only when told to, to stand in for ``time.monotonic``/``time.time``."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
