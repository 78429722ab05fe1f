"""Keys and scopes over HTTP: who may call what, and what a refusal looks like."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.main import create_app
from app.security.auth import OpenDeploymentRefused
from app.security.keys import new_key
from app.settings import Settings
from tests.app.conftest import services_of, wait_until_finished
from tests.app.keys import Clock, bearer, create_key

pytestmark = pytest.mark.anyio

PROBLEM = "application/problem+json"
RUN = {"pipeline": "controlled", "params": {"logs": 1}}
# Every operation that needs a key, and the scope it needs (the health probes need none).
SCOPES = {
    ("GET", "/pipelines"): "read",
    ("GET", "/pipelines/{name}"): "read",
    ("POST", "/runs"): "run",
    ("GET", "/runs"): "read",
    ("GET", "/runs/{run_id}"): "read",
    ("POST", "/runs/{run_id}/cancel"): "run",
    ("GET", "/runs/{run_id}/logs"): "read",
    ("GET", "/runs/{run_id}/events"): "read",
    ("GET", "/events"): "read",
    ("POST", "/runs/{run_id}/stream-token"): "read",
    ("POST", "/events/stream-token"): "read",
    ("GET", "/metrics"): "admin",
}
OPEN = {("GET", "/healthz"), ("GET", "/readyz")}
ALL_BUT = {
    "read": ("run",),
    "run": ("read",),
    "admin": ("read", "run"),
}


def operations(app: FastAPI) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (method.upper(), path): operation
        for path, methods in app.openapi()["paths"].items()
        for method, operation in methods.items()
    }


def concrete(path: str, run_id: str) -> str:
    return path.format(run_id=run_id, name="controlled")


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    problem: dict[str, Any] = response.json()
    assert problem["status"] == status
    assert problem["type"].endswith({401: "unauthorized", 403: "forbidden"}.get(status, ""))
    return problem


async def finished_run(client: httpx.AsyncClient, app: FastAPI, key: str) -> str:
    response = await client.post("/runs", json=RUN, headers=bearer(key))
    assert response.status_code == 202, response.text
    run_id: str = response.json()["id"]
    assert await wait_until_finished(app, run_id) == "succeeded"
    return run_id


async def test_the_table_names_every_operation_that_needs_a_key(app: FastAPI) -> None:
    secured = {k: op["security"] for k, op in operations(app).items() if op.get("security")}

    assert set(secured) == set(SCOPES)
    assert set(operations(app)) - set(secured) == OPEN
    assert all(security == [{"apiKey": []}] for security in secured.values())
    scheme = app.openapi()["components"]["securitySchemes"]["apiKey"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")


async def test_without_keys_on_loopback_everything_is_open(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    response = await client.post("/runs", json=RUN)
    assert response.status_code == 202
    assert await wait_until_finished(app, response.json()["id"]) == "succeeded"
    assert (await client.get("/metrics")).status_code == 200
    assert (await client.get(f"/runs/{response.json()['id']}")).status_code == 200


@pytest.mark.parametrize(("method", "path"), sorted(SCOPES))
async def test_a_request_without_a_key_is_a_401_problem_with_www_authenticate(
    client: httpx.AsyncClient, app: FastAPI, method: str, path: str
) -> None:
    admin = await create_key(app, "admin", "admin")
    run_id = await finished_run(client, app, admin)

    response = await client.request(method, concrete(path, run_id), json=RUN)

    assert_problem(response, 401)
    assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize(("method", "path"), sorted(SCOPES))
async def test_a_key_without_the_operations_scope_is_a_403_problem(
    client: httpx.AsyncClient, app: FastAPI, method: str, path: str
) -> None:
    scope = SCOPES[method, path]
    admin = await create_key(app, "admin", "admin")
    lacking = await create_key(app, "lacking", *ALL_BUT[scope])
    run_id = await finished_run(client, app, admin)

    response = await client.request(
        method, concrete(path, run_id), json=RUN, headers=bearer(lacking)
    )

    assert_problem(response, 403)
    assert scope in response.json()["detail"]


@pytest.mark.parametrize(("method", "path"), sorted(SCOPES))
async def test_a_revoked_key_is_a_401(
    client: httpx.AsyncClient, app: FastAPI, method: str, path: str
) -> None:
    admin = await create_key(app, "admin", "admin")
    run_id = await finished_run(client, app, admin)
    await services_of(app).auth.keys.revoke("admin")

    response = await client.request(method, concrete(path, run_id), json=RUN, headers=bearer(admin))

    assert_problem(response, 401)


@pytest.mark.parametrize(
    "authorization",
    [
        "Basic dXNlcjpwYXNz",
        "Bearer",
        "Bearer not-a-key",
        "Bearer sl_0123456789ab_" + "x" * 43,
        "sl_0123456789ab_" + "x" * 43,
    ],
)
async def test_anything_but_a_valid_bearer_key_is_a_401(
    client: httpx.AsyncClient, app: FastAPI, authorization: str
) -> None:
    await create_key(app, "someone", "read")

    response = await client.get("/runs", headers={"Authorization": authorization})

    assert_problem(response, 401)


async def test_the_right_id_with_a_wrong_secret_is_a_401(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    key = await create_key(app, "reader", "read")
    forged = key[: -len("x" * 43)] + "x" * 43

    assert (await client.get("/runs", headers=bearer(key))).status_code == 200
    assert_problem(await client.get("/runs", headers=bearer(forged)), 401)


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8"])
async def test_creating_a_run_checks_the_key_on_the_fast_and_the_declared_path(
    client: httpx.AsyncClient, app: FastAPI, content_type: str
) -> None:
    reader = await create_key(app, "reader", "read")
    runner = await create_key(app, "runner", "run")
    headers = {"content-type": content_type}
    body = b'{"pipeline": "controlled"}'

    missing = await client.post("/runs", content=body, headers=headers)
    scoped = await client.post("/runs", content=body, headers={**headers, **bearer(reader)})
    invalid = await client.post("/runs", content=b"{", headers=headers)
    allowed = await client.post("/runs", content=body, headers={**headers, **bearer(runner)})

    assert_problem(missing, 401)
    assert_problem(scoped, 403)
    assert_problem(invalid, 401)  # no key, no answer about the body
    assert allowed.status_code == 202
    assert await wait_until_finished(app, allowed.json()["id"]) == "succeeded"


async def test_the_health_probes_need_no_key(client: httpx.AsyncClient, app: FastAPI) -> None:
    await create_key(app, "admin", "admin")

    assert (await client.get("/healthz")).status_code == 200
    assert (await client.get("/readyz")).status_code == 200
    assert (await client.get("/openapi.json")).status_code == 200


async def test_admin_can_do_everything_and_read_metrics(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    admin = await create_key(app, "admin", "admin")
    reader = await create_key(app, "reader", "read", "run")

    assert (await client.get("/metrics", headers=bearer(admin))).status_code == 200
    assert_problem(await client.get("/metrics", headers=bearer(reader)), 403)
    run_id = await finished_run(client, app, admin)
    assert (await client.get(f"/runs/{run_id}", headers=bearer(admin))).status_code == 200


async def test_a_key_revoked_elsewhere_stops_working_once_its_cache_entry_expires(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    keys = services_of(app).auth.keys
    clock = Clock()
    keys.clock = clock
    key = await create_key(app, "reader", "read")
    assert (await client.get("/runs", headers=bearer(key))).status_code == 200

    await services_of(app).store.revoke_api_key("reader")  # as `stepline keys revoke` does

    assert (await client.get("/runs", headers=bearer(key))).status_code == 200
    clock.advance(keys.cache_seconds + 0.001)
    assert_problem(await client.get("/runs", headers=bearer(key)), 401)


async def test_a_key_created_elsewhere_turns_authentication_on_within_the_cache_time(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    keys = services_of(app).auth.keys
    clock = Clock()
    keys.clock = clock
    assert (await client.get("/runs")).status_code == 200

    text, row = new_key("x", ["read"])
    await services_of(app).store.create_api_key(row)  # as `stepline keys create` does

    assert (await client.get("/runs")).status_code == 200
    clock.advance(keys.cache_seconds + 0.001)
    assert_problem(await client.get("/runs"), 401)
    assert (await client.get("/runs", headers=bearer(text))).status_code == 200


async def test_a_request_that_arrived_on_a_public_address_needs_a_key(app: FastAPI) -> None:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://192.0.2.10") as remote:
        assert_problem(await remote.get("/runs"), 401)
        assert (await remote.get("/healthz")).status_code == 200
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as local:
        assert (await local.get("/runs")).status_code == 200


async def test_auth_on_needs_a_key_even_on_loopback(settings: Settings) -> None:
    app = create_app(settings.model_copy(update={"auth": "on"}))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            assert_problem(await client.get("/runs"), 401)


async def test_auth_off_ignores_keys(settings: Settings) -> None:
    app = create_app(settings.model_copy(update={"auth": "off"}))
    async with app.router.lifespan_context(app):
        await create_key(app, "admin", "admin")
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            assert (await client.get("/runs")).status_code == 200


@pytest.mark.parametrize("auth", ["auto", "on", "off"])
async def test_serving_beyond_loopback_without_keys_refuses_to_start(
    settings: Settings, auth: str
) -> None:
    app = create_app(settings.model_copy(update={"host": "0.0.0.0", "auth": auth}))

    with pytest.raises(OpenDeploymentRefused, match="STEPLINE_ALLOW_OPEN"):
        async with app.router.lifespan_context(app):
            pass


async def test_an_open_deployment_says_so_loudly_and_serves_without_keys(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(settings.model_copy(update={"host": "0.0.0.0", "allow_open": True}))

    with caplog.at_level(logging.WARNING, "stepline.security"):
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                assert (await client.get("/runs")).status_code == 200
                key = await create_key(app, "admin", "admin")
                assert_problem(await client.get("/runs"), 401)  # a key exists: auth is on
                assert (await client.get("/runs", headers=bearer(key))).status_code == 200

    assert any("WITHOUT AUTHENTICATION on 0.0.0.0" in r.getMessage() for r in caplog.records)


async def test_beyond_loopback_with_a_key_starts_with_auth_on(settings: Settings) -> None:
    exposed = settings.model_copy(update={"host": "0.0.0.0"})
    first = create_app(exposed.model_copy(update={"allow_open": True}))
    async with first.router.lifespan_context(first):
        key = await create_key(first, "admin", "admin")

    app = create_app(exposed)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            assert_problem(await client.get("/runs"), 401)
            assert (await client.get("/runs", headers=bearer(key))).status_code == 200
