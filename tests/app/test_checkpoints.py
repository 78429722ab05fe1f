"""After each step and each rollback, the context is checkpointed with the step's state."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.pipelines.loading import PipelineLoadError, load_pipelines
from app.runs.checkpoint import CheckpointError, checkpoint_of, restore
from steps import BaseStepContext, RuntimeContext

from .conftest import services_of, wait_until_finished

pytestmark = pytest.mark.anyio


@dataclass
class Ctx(BaseStepContext):
    names: list[str] = field(default_factory=list)
    total: int = 0
    lock: Any = None


def test_a_checkpoint_holds_the_pipelines_own_fields_only() -> None:
    context = Ctx(RuntimeContext(), names=["a"], total=3)
    context.errors.append("not part of it")

    assert checkpoint_of(context) == {"names": ["a"], "total": 3, "lock": None}


def test_a_field_json_cannot_hold_is_named() -> None:
    context = Ctx(RuntimeContext(), lock=threading.Lock())

    with pytest.raises(CheckpointError, match=r"Ctx\.lock holds lock"):
        checkpoint_of(context)


def test_restore_puts_the_fields_back_on_a_fresh_context() -> None:
    fresh = Ctx(RuntimeContext())

    restore(fresh, {"names": ["a", "b"], "total": 2, "unknown": 1})

    assert (fresh.names, fresh.total) == (["a", "b"], 2)
    assert not hasattr(fresh, "unknown")


async def test_each_step_stores_the_context_and_its_result(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    run_id = (await client.post("/runs", json={"pipeline": "collect"})).json()["id"]
    assert await wait_until_finished(app, run_id) == "succeeded"

    run = await services_of(app).store.get_run(run_id)

    assert run.checkpoint == {"items": ["x", "y"], "count": 2, "note": None}
    collect, count = run.steps
    assert (collect.result_data, collect.rollback_data) == ({"added": 2}, {"remove": ["x", "y"]})
    assert (count.result_data, count.rollback_data) == ({"count": 2}, {})


async def test_a_step_that_leaves_an_unserialisable_value_fails_and_says_which_field(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    body = {"pipeline": "collect", "params": {"unserialisable": True}}
    run_id = (await client.post("/runs", json=body)).json()["id"]
    assert await wait_until_finished(app, run_id) == "failed"

    run = (await client.get(f"/runs/{run_id}")).json()

    assert run["error"]["step"] == "count"
    assert "Collected.note" in run["error"]["message"]
    assert [s["rollback"]["status"] for s in run["steps"]] == ["rolled_back", "not_supported"]


def test_a_pipeline_whose_context_cannot_be_checkpointed_is_refused_at_start_up() -> None:
    with pytest.raises(PipelineLoadError, match=r"uncheckpointable.*Locked\.lock"):
        load_pipelines(["tests.app.loadable_bad_context"], demos=False, use_entry_points=False)
