"""``POST /runs`` answers alike whether the lane in front of the middleware stack serves it
(``Content-Type: application/json``) or the declared route does (any other JSON type)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel, model_validator
from starlette.types import ASGIApp, Receive, Scope, Send

from app.main import create_app
from app.settings import Settings
from steps import BaseAction, StepRegistry

from .conftest import wait_until_finished
from .pipelines import Noop

pytestmark = pytest.mark.anyio

LANE = "application/json"
DECLARED = "application/json; charset=utf-8"
VARYING = {"date", "content-length", "location"}  # the only headers two answers may differ in
RUN_FIELDS_OF_THE_MOMENT = {"id", "created_at", "updated_at", "last_event_id"}


class BrokenParams(BaseModel):
    explode: bool = False

    @model_validator(mode="after")
    def check(self) -> BrokenParams:
        if self.explode:
            raise RuntimeError("a defect in the pipeline's own code")
        return self


class BrokenAction(BaseAction[BrokenParams]):
    """Its params model fails, when asked to, with an error that is not a validation error."""

    name = "broken"

    def setup_steps(self, registry: StepRegistry[Any]) -> None:
        registry.register(Noop("nothing"))


class Seen:
    """A middleware added to the app: counts the ``POST /runs`` it passes."""

    count = 0

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            Seen.count += 1
        await self.app(scope, receive, send)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"pipelines": [*settings.pipelines, "tests.app.test_create_lane:BrokenAction"]}
    )


def headers_of(response: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k not in VARYING}


async def post_both(
    client: httpx.AsyncClient, body: bytes, **headers: str
) -> tuple[httpx.Response, httpx.Response]:
    lane = await client.post("/runs", content=body, headers={**headers, "content-type": LANE})
    declared = await client.post(
        "/runs", content=body, headers={**headers, "content-type": DECLARED}
    )
    return lane, declared


async def test_a_created_run_is_answered_alike(client: httpx.AsyncClient, app: FastAPI) -> None:
    lane, declared = await post_both(client, b'{"pipeline": "controlled", "labels": {"a": "b"}}')

    assert lane.status_code == declared.status_code == 202
    assert headers_of(lane) == headers_of(declared)
    assert headers_of(lane)["x-content-type-options"] == "nosniff"
    for response in (lane, declared):
        assert response.headers["location"] == f"/runs/{response.json()['id']}"
    strip = RUN_FIELDS_OF_THE_MOMENT
    assert {k: v for k, v in lane.json().items() if k not in strip} == {
        k: v for k, v in declared.json().items() if k not in strip
    }
    for response in (lane, declared):
        assert await wait_until_finished(app, response.json()["id"]) == "succeeded"


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b'{"pipeline": "nope"}', 404),
        (b'{"pipeline": "controlled", "params": {"logs": "many"}}', 422),
        (b'{"pipeline": "controlled", "surprise": 1}', 422),
        (b'{"pipeline": "controlled"', 422),
        (b'{"pipeline": "broken", "params": {"explode": true}}', 500),
    ],
)
async def test_a_refusal_is_the_same_problem(app: FastAPI, body: bytes, status: int) -> None:
    # The declared route's 500 is re-raised to the server (to log it): not to this client.
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        lane, declared = await post_both(client, body)

    assert lane.status_code == declared.status_code == status
    assert headers_of(lane) == headers_of(declared)
    assert lane.headers["content-type"] == "application/problem+json"
    assert lane.json() == declared.json()


async def test_a_repeat_and_a_conflicting_repeat_are_answered_alike(
    client: httpx.AsyncClient,
) -> None:
    body = b'{"pipeline": "controlled"}'
    first = await client.post(
        "/runs", content=body, headers={"content-type": LANE, "idempotency-key": "k1"}
    )
    lane, declared = await post_both(client, body, **{"idempotency-key": "k1"})
    other_lane, other_declared = await post_both(
        client, b'{"pipeline": "controlled", "labels": {"x": "y"}}', **{"idempotency-key": "k1"}
    )

    assert first.status_code == 202
    assert lane.status_code == declared.status_code == 200
    assert lane.json()["id"] == declared.json()["id"] == first.json()["id"]
    assert headers_of(lane) == headers_of(declared)
    assert other_lane.status_code == other_declared.status_code == 409
    assert other_lane.json() == other_declared.json()


async def test_an_idempotency_key_too_long_is_refused_by_the_route(
    client: httpx.AsyncClient,
) -> None:
    lane, declared = await post_both(
        client, b'{"pipeline": "controlled"}', **{"idempotency-key": "k" * 256}
    )

    assert lane.status_code == declared.status_code == 422
    assert lane.json() == declared.json()


async def test_the_lane_serves_in_front_of_the_middleware(settings: Settings) -> None:
    """Middleware added to the app sees every request but the common ``POST /runs``."""
    application = create_app(settings)
    application.add_middleware(Seen)
    Seen.count = 0
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            lane, declared = await post_both(client, b'{"pipeline": "controlled"}')
            refused = await client.post(
                "/runs", content=b'{"pipeline": 1}', headers={"content-type": LANE}
            )
            for response in (lane, declared):
                assert await wait_until_finished(application, response.json()["id"]) == (
                    "succeeded"
                )

    assert (lane.status_code, declared.status_code, refused.status_code) == (202, 202, 422)
    assert Seen.count == 2  # the declared route's, and the body the lane handed on
