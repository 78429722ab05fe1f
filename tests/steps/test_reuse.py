"""Each execute() is a fresh run: nothing is counted or rolled back twice."""

from __future__ import annotations

import threading

import pytest

from steps import Orchestrator, StepFailedError

from .conftest import Ctx, Step, registry_of


def test_executing_twice_does_not_double_count(ctx: Ctx) -> None:
    orchestrator = Orchestrator(registry_of(Step("a"), Step("b")), ctx)

    first = orchestrator.execute()
    second = orchestrator.execute()

    assert first == second == {"success": True, "steps_executed": 2, "steps_total": 2}


def test_a_failure_in_a_second_run_rolls_back_only_that_run(ctx: Ctx) -> None:
    registry = registry_of(Step("a"), Step("b"))
    orchestrator = Orchestrator(registry, ctx)
    orchestrator.execute()
    registry.register(Step("c", fail=ValueError("c")))
    ctx.trace.clear()

    with pytest.raises(StepFailedError) as caught:
        orchestrator.execute()

    assert ctx.trace == ["exec a", "exec b", "exec c", "undo c", "undo b", "undo a"]
    assert caught.value.report.rolled_back == ["c", "b", "a"]


def test_the_report_belongs_to_the_latest_run(ctx: Ctx) -> None:
    orchestrator = Orchestrator(registry_of(Step("a")), ctx)
    orchestrator.execute()
    first = orchestrator.report
    orchestrator.execute()

    assert orchestrator.report is not first


def test_executing_while_already_executing_is_an_error(ctx: Ctx) -> None:
    inside, release = threading.Event(), threading.Event()
    orchestrator = Orchestrator(
        registry_of(Step("a", action=lambda c: (inside.set(), release.wait(5)))), ctx
    )
    worker = threading.Thread(target=orchestrator.execute)
    worker.start()
    assert inside.wait(5)

    try:
        with pytest.raises(RuntimeError, match="already executing"):
            orchestrator.execute()
    finally:
        release.set()
        worker.join(5)
