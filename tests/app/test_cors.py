"""CORS from an explicit allow-list: allowed origins echoed exactly, others get nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from pydantic import ValidationError

from app.main import create_app
from app.settings import Settings
from tests.app.keys import create_key

pytestmark = pytest.mark.anyio

ALLOWED = "https://dash.example.com"
OTHER = "https://evil.example.net"


@pytest.fixture
async def cors_client(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    app = create_app(
        settings.model_copy(update={"cors_origins": [ALLOWED, "http://localhost:3000"]})
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://stepline.test") as c:
            yield app, c


def preflight(origin: str, method: str = "POST") -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "authorization, content-type, idempotency-key",
    }


def varies_on_origin(response: httpx.Response) -> bool:
    return "origin" in {v.strip().lower() for v in response.headers.get("vary", "").split(",")}


async def test_a_preflight_from_an_allowed_origin_echoes_it_exactly(
    cors_client: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    app, client = cors_client
    await create_key(app, "admin", "admin")  # authentication on: preflights need no key

    response = await client.options("/runs", headers=preflight(ALLOWED))

    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == ALLOWED
    assert response.headers["access-control-allow-credentials"] == "true"
    assert "POST" in response.headers["access-control-allow-methods"]
    assert "authorization" in response.headers["access-control-allow-headers"].lower()
    assert varies_on_origin(response)


@pytest.mark.parametrize("origin", [OTHER, "null", "https://dash.example.com.evil.net"])
async def test_a_preflight_from_another_origin_is_refused_without_allow_origin(
    cors_client: tuple[FastAPI, httpx.AsyncClient], origin: str
) -> None:
    _app, client = cors_client

    response = await client.options("/runs", headers=preflight(origin))

    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == 400
    assert "origin" in response.json()["detail"]
    assert "access-control-allow-origin" not in response.headers
    assert varies_on_origin(response)


async def test_requests_from_an_allowed_origin_may_read_the_answer_others_may_not(
    cors_client: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    _app, client = cors_client

    allowed = await client.get("/pipelines", headers={"Origin": ALLOWED})
    other = await client.get("/pipelines", headers={"Origin": OTHER})
    created = await client.post("/runs", json={"pipeline": "NOOP_10"}, headers={"Origin": ALLOWED})

    assert allowed.headers["access-control-allow-origin"] == ALLOWED
    assert varies_on_origin(allowed)
    assert "access-control-allow-origin" not in other.headers
    assert varies_on_origin(other)
    assert created.headers["access-control-allow-origin"] == ALLOWED
    assert "location" in created.headers["access-control-expose-headers"].lower()
    assert "*" not in str(allowed.headers) + str(created.headers)


async def test_without_an_allow_list_there_is_no_cors(client: httpx.AsyncClient) -> None:
    preflight_response = await client.options("/runs", headers=preflight(ALLOWED))
    simple = await client.get("/pipelines", headers={"Origin": ALLOWED})

    assert preflight_response.status_code == 405
    assert preflight_response.headers["content-type"] == "application/problem+json"
    assert "access-control-allow-origin" not in preflight_response.headers
    assert "access-control-allow-origin" not in simple.headers


@pytest.mark.parametrize(
    "origins", ["*", "https://*.example.com", "https://x.example.com/app", "x.example.com", "null"]
)
def test_only_explicit_origins_can_be_allowed(origins: str) -> None:
    with pytest.raises(ValidationError, match="not an origin"):
        Settings(cors_origins=origins)


def test_origins_are_a_comma_separated_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STEPLINE_CORS_ORIGINS", "https://a.example, http://localhost:3000/")

    assert Settings().cors_origins == ["https://a.example", "http://localhost:3000"]
