"""What routes depend on, taken from the app's state (wired in ``app.main``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from app.metrics import Metrics
from app.runs.bus import EventBus
from app.runs.service import RunService
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


def _services(request: Request) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]


ServicesDep = Annotated[Services, Depends(_services)]
