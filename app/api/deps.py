"""What routes depend on, taken from the app's state (wired in ``app.main``)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from app.metrics import Metrics
from app.runs.bus import EventBus
from app.runs.service import RunService
from app.security.auth import Authenticator
from app.security.quotas import Quotas
from app.settings import Settings
from app.store.base import Store

__all__ = ["Services", "ServicesDep"]


@dataclass
class Services:
    """Everything one app instance is made of."""

    settings: Settings
    store: Store
    bus: EventBus
    runs: RunService
    metrics: Metrics
    auth: Authenticator
    quotas: Quotas

    loop: asyncio.AbstractEventLoop | None = None

    def request_shutdown(self) -> None:
        """``begin_shutdown`` on the app's event loop, from any thread (a signal handler)."""
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self.begin_shutdown)

    def begin_shutdown(self) -> None:
        """The server is stopping: refuse new runs (503), end every event stream with a
        final ``stream.closing`` event, and let running steps finish (their runs stop at
        the step boundary, to be carried on by the next start)."""
        self.runs.accepting = False
        self.bus.close()
        self.runs.workers.begin_stop()


# async: FastAPI would run a plain function in a worker thread, for every request.
async def _services(request: Request) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]


ServicesDep = Annotated[Services, Depends(_services)]
