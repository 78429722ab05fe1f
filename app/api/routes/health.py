"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST

from app.api.auth import AdminKey
from app.api.deps import ServicesDep
from app.api.problems_doc import PROBLEMS
from app.errors import Unavailable

router = APIRouter(tags=["operations"])


@router.get("/healthz", name="healthz")
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz", name="readyz", responses=PROBLEMS(503))
async def readyz(services: ServicesDep) -> dict[str, str]:
    """The database answers and its schema is at the latest migration."""
    problem = await services.store.check_ready()
    if problem is not None:
        raise Unavailable(problem)
    return {"status": "ready"}


@router.get(
    "/metrics",
    name="metrics",
    response_class=Response,
    responses={
        200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}},
        **PROBLEMS(401, 403),
    },
)
async def metrics(services: ServicesDep, _key: AdminKey) -> Response:
    """Prometheus metrics (an ``admin`` key, once authentication is on)."""
    text = await services.metrics.render(services.store, services.runs.workers.busy)
    return Response(text, media_type=CONTENT_TYPE_LATEST)
