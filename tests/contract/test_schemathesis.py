"""Schemathesis against the app's own OpenAPI: no 5xx, and every error is problem details.

Every operation but the two SSE streams (which never end) gets generated requests, valid and
invalid ones, sent through schemathesis' ASGI transport to an app on a fresh SQLite file.
Path parameters are generated, and also pointed at runs and pipelines that exist (a run
that succeeded, one that failed and rolled back, one held at a step, one queued behind it),
so that requests get past the 404. It all runs twice: with authentication off, and with it
on and every request sending a key with the ``read`` and ``run`` scopes (not ``admin``), so
that ownership and scopes are exercised too.

``schemathesis.pytest.from_fixture`` cannot be used here: schemathesis 4.32.5 reads
``request.node._nodeid``, which pytest 9.2 no longer has (AttributeError). So each operation
is a parametrized test that draws cases from ``operation.as_strategy()`` under ``@given``.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.python import asgi

from app.main import create_app
from app.settings import Settings
from app.states import TERMINAL
from tests.app.keys import bearer, stored_keys
from tests.app.pipelines import GATES

PROBLEM = "application/problem+json"
EXAMPLES_PER_OPERATION = 20
WAIT = 20.0  # seconds any wait may take
MAX_STREAM_EVENTS = 10_000  # more than any run here writes: read each stream to its end
SSE_OPERATIONS = frozenset({"stream_run_events", "stream_events"})  # never end: not fuzzed
OPERATIONS = (
    "list_pipelines",
    "get_pipeline",
    "create_run",
    "list_runs",
    "get_run",
    "cancel_run",
    "get_run_logs",
    "create_run_stream_token",
    "create_events_stream_token",
    "healthz",
    "readyz",
    "metrics",
)
PIPELINES = ("controlled", "NOOP_10")
RUN_BODIES: tuple[dict[str, Any], ...] = (
    {"pipeline": "controlled", "params": {"logs": 2}},
    {"pipeline": "controlled", "params": {"fail_at": "b", "undo_fails": ["a"], "logs": 2}},
    {"pipeline": "NOOP_10", "labels": {"team": "contract"}},
)


@dataclass
class Api:
    """An app whose lifespan schemathesis has entered, its schema, what exists in it to
    point path parameters at, and every run created in it (to settle at the end)."""

    app: FastAPI
    schema: schemathesis.BaseSchema
    gate: str
    headers: dict[str, str] = field(default_factory=dict)
    admin_headers: dict[str, str] = field(default_factory=dict)
    path_parameters: tuple[dict[str, str], ...] = ()
    runs: list[str] = field(default_factory=list)

    def settle(self) -> None:
        """Open the gate and follow every run's event stream to its end (the stream closes
        after the run's final event), so that no run is in flight when the test ends."""
        GATES.open(self.gate)
        with asgi.get_client(self.app, max_stream_events=MAX_STREAM_EVENTS) as client:
            client.headers.update(self.admin_headers)
            for run_id in self.runs:
                stream = client.get(f"/runs/{run_id}/events", timeout=WAIT)
                assert stream.status_code == 200, stream.text
                status = client.get(f"/runs/{run_id}").json()["status"]
                assert status in TERMINAL, (run_id, status)


@pytest.fixture(params=["open", "key"])
def api(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Api]:
    """An app on a fresh SQLite file with one worker, and runs in it: one succeeded, one
    failed and rolled back, one held at a gate, one queued behind it; with ``key``,
    authentication is on and every request sends a ``read`` and ``run`` key.

    Schemathesis enters the app's lifespan when it loads the schema, and its pytest plugin
    ends every ASGI lifespan when a test ends; so one app per test, settled by the test.
    """
    url = f"sqlite+aiosqlite:///{tmp_path / 'stepline.db'}"
    headers: dict[str, str] = {}
    admin: dict[str, str] = {}
    if request.param == "key":
        # A key for the fuzzed requests, another key whose run they must not reach, and an
        # admin key to settle every run at the end.
        mine, other, root = asyncio.run(
            stored_keys(
                url,
                ("contract", ("read", "run")),
                ("other", ("read", "run")),
                ("admin", ("admin",)),
            )
        )
        headers, admin = bearer(mine), bearer(root)
    app = create_app(
        Settings(
            database_url=url,
            pipelines=["tests.app.pipelines", "tests.app.pipelines:NOOP_10"],
            demo_pipelines=False,
            entry_points=False,
            workers=1,
            poll_seconds=0.05,
        )
    )
    api = Api(
        app, schemathesis.openapi.from_asgi("/openapi.json", app), uuid.uuid4().hex, headers, admin
    )
    held = {"pipeline": "controlled", "params": {"gate_at": "b", "gate": api.gate}}
    try:
        with asgi.get_client(app) as client:
            client.headers.update(headers)
            if request.param == "key":
                others = client.post("/runs", json=RUN_BODIES[0], headers=bearer(other))
                api.runs.append(others.json()["id"])
            # One worker runs them in order: the held run reaches its gate only after the
            # first three have finished, and the last stays queued behind it.
            for body in (*RUN_BODIES, held):
                api.runs.append(client.post("/runs", json=body).json()["id"])
            assert GATES.reached(api.gate).wait(WAIT), "the held run never reached its gate"
            api.runs.append(client.post("/runs", json={"pipeline": "controlled"}).json()["id"])
        api.path_parameters = tuple({"run_id": i} for i in api.runs) + tuple(
            {"name": n} for n in PIPELINES
        )
        yield api
    finally:
        GATES.open(api.gate)
        asgi.shutdown_lifespans()  # already done by schemathesis' plugin, unless it failed


def _cases(api: Api, operation_id: str) -> st.SearchStrategy[schemathesis.Case]:
    operation = api.schema.find_operation_by_id(operation_id)
    names = {p.name for p in operation.path_parameters}
    known = [p for p in api.path_parameters if names and set(p) == names]
    strategies = [
        operation.as_strategy(mode, path_parameters=fixed)
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
        for fixed in (None, *known)
    ]
    if operation_id == "create_run":
        strategies += [operation.as_strategy(body=body) for body in RUN_BODIES]
    return st.one_of(strategies)


def _assert_no_server_error_and_problem_details(
    case: schemathesis.Case, response: schemathesis.Response
) -> None:
    where = f"{case.as_curl_command()}\n-> {response.status_code} {response.content[:500]!r}"
    assert response.status_code < 500, where
    if response.status_code >= 400:
        assert response.headers.get("content-type") == [PROBLEM], where
        problem = response.json()
        assert isinstance(problem, dict), where
        assert isinstance(problem.get("type"), str), where
        assert isinstance(problem.get("title"), str), where
        assert problem.get("status") == response.status_code, where


def test_every_operation_but_the_streams_is_fuzzed(api: Api) -> None:
    api.settle()

    found = {op.ok().definition.raw["operationId"] for op in api.schema.get_all_operations()}

    assert found - SSE_OPERATIONS == set(OPERATIONS)


@pytest.mark.parametrize("operation_id", OPERATIONS)
def test_no_server_error_and_every_error_is_a_problem(api: Api, operation_id: str) -> None:
    statuses: set[int] = set()

    @given(case=_cases(api, operation_id))
    @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None)
    def check(case: schemathesis.Case) -> None:
        # The ASGI client re-raises an exception that the app turned into a 500.
        response = case.call(headers=api.headers)
        _assert_no_server_error_and_problem_details(case, response)
        statuses.add(response.status_code)
        if operation_id == "create_run" and response.status_code == 202:
            api.runs.append(response.json()["id"])

    try:
        check()
    finally:
        api.settle()
    # The key is sent and accepted (a generated case may bring credentials of its own): the
    # requests get past authentication, but not to metrics, which needs admin.
    assert statuses - {401}, statuses
    if api.headers and operation_id == "metrics":
        assert statuses <= {401, 403}


def test_logs_after_beyond_sqlite_integers_is_a_422(api: Api) -> None:
    """Found by this fuzzing: ``after`` had no upper bound, and 2**63 reached SQLite as an
    OverflowError, a 500 (fixed in 77446ff). The case, recorded."""
    run_id = api.path_parameters[0]["run_id"]
    operation = api.schema.find_operation_by_id("get_run_logs")
    case = operation.Case(path_parameters={"run_id": run_id}, query={"after": 2**63})

    try:
        response = case.call(headers=api.headers)
    finally:
        api.settle()

    assert response.status_code == 422
    _assert_no_server_error_and_problem_details(case, response)
