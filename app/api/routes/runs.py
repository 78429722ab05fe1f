"""Runs: create, list, read, cancel, logs."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, Query, Request, Response, status
from fastapi.routing import APIRoute

from app.api.auth import ReadKey, RunKey, authenticate
from app.api.deps import Services, ServicesDep
from app.api.problems_doc import PROBLEMS
from app.api.schemas import CancelRequest, LogsPublic, RunCreate, RunPublic, RunsPublic
from app.api.views import log_line, run_json, run_public
from app.errors import BadRequest
from app.security.keys import Principal
from app.states import RunStatus
from app.store.records import RunFilter

router = APIRouter(tags=["runs"])

IDEMPOTENCY_KEY_LENGTH = 255
MAX_EVENT_ID = 2**63 - 1  # event ids and sequences are SQL BIGINTs


class _CreateRunRoute(APIRoute):
    """``POST /runs`` asks for the key before FastAPI reads the body: no key, no answer
    about the body (as ``app.api.create_lane`` does)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        declared = super().get_route_handler()

        async def handler(request: Request) -> Response:
            await authenticate(request, "run")
            return await declared(request)

        return handler


async def create_response(
    services: Services, body: RunCreate, idempotency_key: str | None, principal: Principal
) -> Response:
    if principal.key_id is not None:
        services.quotas.runs.take(principal.key_id)
    run, created = await services.runs.create(
        body.pipeline, body.params, body.labels, idempotency_key, principal.key_id
    )
    # Written directly, not through response_model: this is the hot path of the API (and
    # app.api.create_lane answers with it too).
    return Response(
        run_json(run),
        status_code=status.HTTP_202_ACCEPTED if created else status.HTTP_200_OK,
        headers={"Location": f"/runs/{run.id}"},
        media_type="application/json",
    )


async def create_run(
    body: RunCreate,
    services: ServicesDep,
    principal: RunKey,
    idempotency_key: Annotated[
        str | None, Header(max_length=IDEMPOTENCY_KEY_LENGTH, min_length=1)
    ] = None,
) -> Response:
    """Queue a run; 202 with ``Location``. A repeat with the same ``Idempotency-Key`` and
    body returns the original run with 200; the same key with another body is a 409.
    Idempotency keys are per API key."""
    return await create_response(services, body, idempotency_key, principal)


router.add_api_route(
    "/runs",
    create_run,
    methods=["POST"],
    name="create_run",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=RunPublic,
    responses={
        200: {"model": RunPublic, "description": "A repeat of an earlier request (same key)"},
        **PROBLEMS(401, 403, 404, 409, 413, 422, 429),
    },
    route_class_override=_CreateRunRoute,
)


@router.get(
    "/runs", name="list_runs", response_model=RunsPublic, responses=PROBLEMS(400, 401, 403, 422)
)
async def list_runs(
    services: ServicesDep,
    principal: ReadKey,
    pipeline: str | None = None,
    run_status: Annotated[RunStatus | None, Query(alias="status")] = None,
    label: Annotated[
        list[str] | None, Query(description="key:value; repeat to require several")
    ] = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    cursor: Annotated[str | None, Query(max_length=26)] = None,
    limit: Annotated[int | None, Query(ge=1)] = None,
) -> RunsPublic:
    """Runs, newest first, filtered; ``limit`` is capped by the server's page size. A key
    without the ``admin`` scope sees the runs it created only."""
    settings = services.settings
    size = min(limit or settings.page_size_default, settings.page_size_max)
    labels: dict[str, str] = {}
    for item in label or []:
        key, sep, value = item.partition(":")
        if not sep or not key:
            raise BadRequest(f"label filter {item!r} must look like key:value")
        labels[key] = value
    filters = RunFilter(
        pipeline, run_status, labels, created_after, created_before, principal.owner_filter
    )
    rows = await services.runs.find(filters, cursor, size + 1)
    next_cursor = rows[size - 1].id if len(rows) > size else None
    return RunsPublic(items=[run_public(r) for r in rows[:size]], next_cursor=next_cursor)


@router.get(
    "/runs/{run_id}", name="get_run", response_model=RunPublic, responses=PROBLEMS(401, 403, 404)
)
async def get_run(run_id: str, services: ServicesDep, principal: ReadKey) -> RunPublic:
    """A run: overall progress, status, timings, error, result, and every step with its
    execution and rollback status."""
    return run_public(await services.runs.get(run_id, principal.owner_filter))


@router.post(
    "/runs/{run_id}/cancel",
    name="cancel_run",
    response_model=RunPublic,
    status_code=status.HTTP_202_ACCEPTED,
    responses=PROBLEMS(401, 403, 404, 409, 422),
)
async def cancel_run(
    run_id: str,
    services: ServicesDep,
    principal: RunKey,
    body: Annotated[CancelRequest | None, Body()] = None,
) -> RunPublic:
    """Cancel a run: a queued run at once; a running one cooperatively, then its completed
    steps roll back (unless ``rollback`` is false). 409 if the run has already finished."""
    rollback = body.rollback if body is not None else True
    return run_public(await services.runs.cancel(run_id, rollback, principal.owner_filter))


@router.get(
    "/runs/{run_id}/logs",
    name="get_run_logs",
    response_model=LogsPublic,
    responses=PROBLEMS(401, 403, 404),
)
async def get_run_logs(
    run_id: str,
    services: ServicesDep,
    principal: ReadKey,
    step: str | None = None,
    after: Annotated[int, Query(ge=0, le=MAX_EVENT_ID)] = 0,
    limit: Annotated[int | None, Query(ge=1)] = None,
) -> LogsPublic:
    """Lines the run's steps wrote through their context, oldest first."""
    settings = services.settings
    size = min(limit or settings.page_size_default, settings.page_size_max)
    rows = await services.runs.logs(run_id, step, after, size + 1, principal.owner_filter)
    next_after = rows[size - 1].seq if len(rows) > size else None
    return LogsPublic(items=[log_line(r) for r in rows[:size]], next_after=next_after)
