"""POST /runs, GET /runs, GET /runs/{id}: the HTTP contract through the ASGI app."""

from __future__ import annotations

import asyncio
import json
import uuid

import httpx
import pytest
from fastapi import FastAPI

from tests.configurations import CONFIGURATIONS
from tests.databases import table_counts

from .conftest import services_of, wait_until_finished
from .pipelines import GATES

pytestmark = pytest.mark.anyio

PROBLEM = "application/problem+json"


@pytest.fixture(params=CONFIGURATIONS)
def backend(request: pytest.FixtureRequest) -> str:
    """Every test here on every store."""
    return str(request.param)


async def count_rows(app: FastAPI) -> tuple[int, ...]:
    """Rows of runs, events and idempotency keys, read from the database itself."""
    url = services_of(app).settings.database_url
    return await asyncio.to_thread(table_counts, url, ("runs", "events", "idempotency_keys"))


async def test_create_returns_202_with_location_and_the_queued_run(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    response = await client.post(
        "/runs", json={"pipeline": "controlled", "params": {}, "labels": {"team": "a"}}
    )

    assert response.status_code == 202
    body = response.json()
    assert response.headers["location"] == f"/runs/{body['id']}"
    assert body["pipeline"] == "controlled"
    assert body["status"] == "queued"
    assert body["labels"] == {"team": "a"}
    assert body["params"]["fail_at"] is None
    assert [(s["name"], s["weight"], s["status"]) for s in body["steps"]] == [
        ("a", 0.2, "pending"),
        ("b", 0.5, "pending"),
        ("c", 0.3, "pending"),
    ]
    first = await services_of(app).store.run_events(body["id"], 0, 1)
    assert [(e.seq, e.type) for e in first] == [(1, "run.queued")]
    assert await wait_until_finished(app, body["id"]) == "succeeded"


async def test_a_run_executes_and_get_shows_every_step(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    created = (await client.post("/runs", json={"pipeline": "controlled"})).json()
    await wait_until_finished(app, created["id"])

    run = (await client.get(f"/runs/{created['id']}")).json()

    assert run["status"] == "succeeded"
    assert run["progress"] == 1.0
    assert run["result"]["success"] is True
    assert run["started_at"] <= run["finished_at"]
    for step in run["steps"]:
        assert step["status"] == "succeeded"
        assert step["attempts"] == 1
        assert step["progress"] == 1.0
        assert step["duration_seconds"] >= 0
        assert step["rollback"] == {
            "status": "not_needed",
            "started_at": None,
            "finished_at": None,
            "error": None,
        }


async def test_a_failed_run_shows_what_was_undone(client: httpx.AsyncClient, app: FastAPI) -> None:
    created = (
        await client.post(
            "/runs",
            json={"pipeline": "controlled", "params": {"fail_at": "c", "undo_fails": ["a"]}},
        )
    ).json()
    assert await wait_until_finished(app, created["id"]) == "failed"

    run = (await client.get(f"/runs/{created['id']}")).json()

    assert run["error"]["step"] == "c"
    assert run["error"]["message"] == "c failed on purpose"
    assert run["error"]["type"] == "RuntimeError"
    steps = {s["name"]: s for s in run["steps"]}
    assert steps["c"]["status"] == "failed"
    assert "Traceback" in steps["c"]["error"]["traceback"]
    assert [steps[n]["rollback"]["status"] for n in "abc"] == [
        "failed",
        "rolled_back",
        "rolled_back",
    ]
    assert steps["a"]["rollback"]["error"]["message"] == "cannot undo a"
    assert run["rollback_progress"] == 1.0
    assert "rollback: c rolled_back, b rolled_back, a failed" in run["summary"]


async def test_unknown_pipeline_is_a_404_problem_and_stores_nothing(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    response = await client.post("/runs", json={"pipeline": "nope"})

    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM
    problem = response.json()
    assert problem["status"] == 404
    assert problem["type"].endswith("pipeline-not-found")
    assert problem["instance"] == "/runs"
    assert "nope" in problem["detail"]
    assert await count_rows(app) == (0, 0, 0)


async def test_invalid_params_are_a_422_listing_the_fields(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    response = await client.post(
        "/runs", json={"pipeline": "controlled", "params": {"logs": "many", "bogus": 1}}
    )

    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
    locations = {tuple(e["loc"]) for e in response.json()["errors"]}
    assert locations == {("params", "logs"), ("params", "bogus")}
    assert await count_rows(app) == (0, 0, 0)


@pytest.mark.parametrize(
    "body",
    [{"pipeline": "controlled", "surprise": 1}, {"params": {}}, {"pipeline": ""}, [1, 2]],
)
async def test_malformed_bodies_are_a_422_problem(
    client: httpx.AsyncClient, app: FastAPI, body: object
) -> None:
    response = await client.post("/runs", json=body)

    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["errors"]
    assert await count_rows(app) == (0, 0, 0)


async def test_a_body_that_is_not_json_is_a_422_problem(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/runs", content=b"{not json", headers={"content-type": "application/json"}
    )

    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM


async def test_a_body_over_the_limit_is_a_413_with_content_length(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    big = {"pipeline": "controlled", "labels": {"x": "y" * (1024 * 1024)}}

    response = await client.post("/runs", json=big)

    assert response.status_code == 413
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["status"] == 413
    assert await count_rows(app) == (0, 0, 0)


async def test_a_chunked_body_over_the_limit_is_a_413(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    async def chunks():  # type: ignore[no-untyped-def]
        yield b'{"pipeline": "controlled", "labels": {"x": "'
        for _ in range(20):
            yield b"y" * 65536
        yield b'"}}'

    response = await client.post(
        "/runs", content=chunks(), headers={"content-type": "application/json"}
    )

    assert "content-length" not in response.request.headers
    assert response.status_code == 413
    assert await count_rows(app) == (0, 0, 0)


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", "/nowhere", 404), ("DELETE", "/runs", 405), ("GET", "/runs/NOPE", 404),
     ("GET", "/runs?limit=0", 422), ("GET", "/runs?status=sleeping", 422)],
)  # fmt: skip
async def test_framework_errors_are_problem_details_too(
    client: httpx.AsyncClient, method: str, path: str, status: int
) -> None:
    response = await client.request(method, path)

    assert response.status_code == status
    assert response.headers["content-type"] == PROBLEM
    problem = response.json()
    assert problem["status"] == status
    assert {"type", "title", "status", "detail", "instance"} <= problem.keys()


async def test_a_repeat_with_the_same_idempotency_key_returns_the_original_run(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    body = {"pipeline": "controlled", "labels": {"k": "v"}}
    headers = {"Idempotency-Key": "order-42"}

    first = await client.post("/runs", json=body, headers=headers)
    again = await client.post("/runs", json=body, headers=headers)
    other = await client.post("/runs", json={**body, "labels": {}}, headers=headers)

    assert (first.status_code, again.status_code, other.status_code) == (202, 200, 409)
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["location"] == first.headers["location"]
    assert other.headers["content-type"] == PROBLEM
    assert other.json()["type"].endswith("idempotency-key-reused")
    assert (await count_rows(app))[0] == 1


async def test_concurrent_requests_with_one_key_create_exactly_one_run(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    body = {"pipeline": "controlled"}
    responses = await asyncio.gather(
        *(client.post("/runs", json=body, headers={"Idempotency-Key": "same"}) for _ in range(20))
    )

    assert sorted(r.status_code for r in responses) == [200] * 19 + [202]
    assert len({r.json()["id"] for r in responses}) == 1
    assert (await count_rows(app))[0] == 1


async def test_list_filters_and_paginates_newest_first(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    ids = []
    for i in range(5):
        pipeline = "controlled" if i % 2 == 0 else "NOOP_10"
        created = await client.post("/runs", json={"pipeline": pipeline, "labels": {"n": str(i)}})
        ids.append(created.json()["id"])
    for run_id in ids:
        await wait_until_finished(app, run_id)

    page1 = (await client.get("/runs", params={"limit": 2})).json()
    page2 = (await client.get("/runs", params={"limit": 2, "cursor": page1["next_cursor"]})).json()
    page3 = (await client.get("/runs", params={"limit": 2, "cursor": page2["next_cursor"]})).json()
    controlled = (await client.get("/runs", params={"pipeline": "controlled"})).json()
    labelled = (await client.get("/runs", params={"label": "n:3"})).json()
    succeeded = (await client.get("/runs", params={"status": "succeeded"})).json()

    listed = [r["id"] for p in (page1, page2, page3) for r in p["items"]]
    assert listed == list(reversed(ids))
    assert page3["next_cursor"] is None
    assert [r["id"] for r in controlled["items"]] == [ids[4], ids[2], ids[0]]
    assert [r["id"] for r in labelled["items"]] == [ids[3]]
    assert len(succeeded["items"]) == 5


async def test_page_size_is_capped(client: httpx.AsyncClient, app: FastAPI) -> None:
    services_of(app).settings.page_size_max = 2
    for _ in range(3):
        await client.post("/runs", json={"pipeline": "NOOP_10"})

    page = (await client.get("/runs", params={"limit": 1000})).json()

    assert len(page["items"]) == 2
    assert page["next_cursor"] is not None


async def test_a_bad_label_filter_is_a_400_problem(client: httpx.AsyncClient) -> None:
    response = await client.get("/runs", params={"label": "no-colon"})

    assert response.status_code == 400
    assert response.headers["content-type"] == PROBLEM


async def test_queued_runs_wait_for_a_free_worker(client: httpx.AsyncClient, app: FastAPI) -> None:
    workers = services_of(app).runs.workers
    gate = f"busy-workers-{uuid.uuid4().hex}"
    blockers = [
        (await client.post(
            "/runs", json={"pipeline": "controlled", "params": {"gate_at": "a", "gate": gate}}
        )).json()["id"]
        for _ in range(workers.concurrency)
    ]  # fmt: skip
    waiting = (await client.post("/runs", json={"pipeline": "NOOP_10"})).json()["id"]
    assert await asyncio.to_thread(GATES.reached(gate).wait, 10)

    assert (await client.get(f"/runs/{waiting}")).json()["status"] == "queued"
    GATES.open(gate)
    for run_id in (*blockers, waiting):
        assert await wait_until_finished(app, run_id) == "succeeded"


async def test_the_run_document_matches_the_public_schema_exactly(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    from app.api.schemas import RunPublic
    from app.api.views import run_document, run_json

    body = {"pipeline": "controlled", "params": {"fail_at": "b", "undo_fails": ["a"]}}
    created = [(await client.post("/runs", json=body)).json() for _ in range(2)]
    run_id = created[0]["id"]
    await wait_until_finished(app, run_id)
    run = await services_of(app).store.get_run(run_id)

    document = run_document(run)

    assert RunPublic.model_validate(document).model_dump(mode="json") == document
    assert (await client.get(f"/runs/{run_id}")).json() == document
    assert json.loads(run_json(run)) == document
    for queued in created:  # answered while queued, with steps written once for both
        assert RunPublic.model_validate(queued).model_dump(mode="json") == queued
        assert {s["status"] for s in queued["steps"]} == {"pending"}
    assert created[0]["id"] != created[1]["id"]
    assert created[0]["steps"] == created[1]["steps"]
