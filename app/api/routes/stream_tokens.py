"""Stream tokens: ``POST /runs/{id}/stream-token`` and ``POST /events/stream-token``."""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter

from app.api.auth import ReadKey
from app.api.deps import ServicesDep
from app.api.problems_doc import PROBLEMS
from app.api.schemas import StreamTokenPublic
from app.security.tokens import all_events_stream, run_stream

router = APIRouter(tags=["events"])


def _token(services: ServicesDep, key_id: str | None, stream: str, path: str) -> StreamTokenPublic:
    token, expires_at = services.auth.tokens.mint(key_id, stream)
    return StreamTokenPublic(
        token=token, expires_at=expires_at, url=f"{path}?token={quote(token, safe='')}"
    )


@router.post(
    "/runs/{run_id}/stream-token",
    name="create_run_stream_token",
    response_model=StreamTokenPublic,
    responses=PROBLEMS(401, 403, 404),
)
async def create_run_stream_token(
    run_id: str, services: ServicesDep, principal: ReadKey
) -> StreamTokenPublic:
    """A token that opens ``GET /runs/{id}/events`` once, within minutes, as ``?token=``."""
    run = await services.runs.get(run_id, principal.owner_filter)
    return _token(services, principal.key_id, run_stream(run.id), f"/runs/{run.id}/events")


@router.post(
    "/events/stream-token",
    name="create_events_stream_token",
    response_model=StreamTokenPublic,
    responses=PROBLEMS(401, 403),
)
async def create_events_stream_token(
    services: ServicesDep, principal: ReadKey
) -> StreamTokenPublic:
    """A token that opens ``GET /events`` once, within minutes, as ``?token=``."""
    return _token(services, principal.key_id, all_events_stream(), "/events")
