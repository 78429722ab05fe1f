"""``GET /pipelines`` and ``GET /pipelines/{name}``: the catalogue."""

from __future__ import annotations

from fastapi import APIRouter

from app.api.auth import ReadKey
from app.api.deps import ServicesDep
from app.api.problems_doc import PROBLEMS
from app.api.schemas import PipelinePublic, PipelinesPublic
from app.api.views import pipeline_public

router = APIRouter(tags=["pipelines"])


@router.get(
    "/pipelines",
    name="list_pipelines",
    response_model=PipelinesPublic,
    responses=PROBLEMS(401, 403),
)
async def list_pipelines(services: ServicesDep, _key: ReadKey) -> PipelinesPublic:
    """Every registered pipeline: steps with normalised weights, and the params schema."""
    pipelines = services.runs.pipelines.values()
    return PipelinesPublic(items=[pipeline_public(p) for p in pipelines])


@router.get(
    "/pipelines/{name}",
    name="get_pipeline",
    response_model=PipelinePublic,
    responses=PROBLEMS(401, 403, 404),
)
async def get_pipeline(name: str, services: ServicesDep, _key: ReadKey) -> PipelinePublic:
    """One pipeline."""
    return pipeline_public(services.runs.pipeline(name))
