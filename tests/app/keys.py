"""API keys for service tests: created through the app's own key service."""

from __future__ import annotations

from fastapi import FastAPI

from app.api.deps import Services

__all__ = ["Clock", "bearer", "create_key"]


def _services(app: FastAPI) -> Services:
    return app.state.services  # type: ignore[no-any-return]


async def create_key(app: FastAPI, name: str, *scopes: str) -> str:
    """A new key of ``app`` with ``scopes``; its text."""
    text, _row = await _services(app).auth.keys.create(name, scopes)
    return text


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
