"""Security headers on every answer of the API, and a strict CSP under ``/ui``."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from app.main import create_app
from app.settings import Settings
from tests.app.conftest import wait_until_finished

pytestmark = pytest.mark.anyio

EXPECTED = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}


@pytest.fixture
async def cors_client(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    app = create_app(
        settings.model_copy(
            update={"cors_origins": ["https://dash.example"], "max_body_bytes": 100}
        )
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://stepline.test") as c:
            yield app, c


def assert_secured(response: httpx.Response) -> None:
    for name, value in EXPECTED.items():
        assert response.headers.get_list(name) == [value], (response.request.url, name)


async def test_every_kind_of_answer_carries_the_security_headers(
    cors_client: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    app, client = cors_client
    created = await client.post("/runs", json={"pipeline": "NOOP_10"})
    run_id = created.json()["id"]
    assert await wait_until_finished(app, run_id) == "succeeded"

    answers = [
        created,
        await client.get(f"/runs/{run_id}"),
        await client.get(f"/runs/{run_id}/events"),  # an event stream (ended with its run)
        await client.get("/runs/nope"),  # a problem
        await client.post("/runs", content=b"x" * 200),  # the body limit's own 413
        await client.delete("/runs"),  # the framework's 405
        await client.get("/healthz"),
        await client.get("/metrics"),
        await client.options(
            "/runs",
            headers={"Origin": "https://dash.example", "Access-Control-Request-Method": "POST"},
        ),  # a CORS preflight
        await client.get("/openapi.json"),
    ]

    assert [a.status_code for a in answers] == [202, 200, 200, 404, 413, 405, 200, 200, 200, 200]
    for answer in answers:
        assert_secured(answer)
        assert "content-security-policy" not in answer.headers


@pytest.mark.parametrize("path", ["/ui", "/ui/", "/ui/runs/1"])
async def test_the_dashboard_may_load_only_from_its_own_origin(
    client: httpx.AsyncClient, path: str
) -> None:
    response = await client.get(path)

    assert_secured(response)
    assert response.headers.get_list("content-security-policy") == ["default-src 'self'"]


async def test_paths_that_only_start_like_the_dashboard_get_no_csp(
    client: httpx.AsyncClient,
) -> None:
    assert "content-security-policy" not in (await client.get("/uix")).headers
