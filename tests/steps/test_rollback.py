"""Rollback: executed steps, the failing one included, are undone in reverse order."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from steps import (
    BaseStep,
    EventType,
    Orchestrator,
    RollbackStatus,
    RunOutcome,
    RuntimeContext,
    StepFailedError,
    StepResult,
    StepStatus,
)

from .conftest import Ctx, NoUndoStep, Step, execute, registry_of


def test_a_raising_step_rolls_back_itself_and_earlier_steps_in_reverse(
    make: Callable[..., Step], ctx: Ctx, mode: str
) -> None:
    boom = ValueError("boom in c")
    registry = registry_of(make("a"), make("b"), make("c", fail=boom), make("d"))

    with pytest.raises(StepFailedError, match="Step 'c' failed: boom in c") as caught:
        execute(Orchestrator(registry, ctx), mode)

    assert ctx.trace == ["exec a", "exec b", "exec c", "undo c", "undo b", "undo a"]
    assert caught.value.__cause__ is boom
    assert isinstance(caught.value, RuntimeError)
    report = caught.value.report
    assert report.outcome is RunOutcome.failed
    assert report.failed_step == "c"
    assert report.error == "boom in c"
    assert report.rolled_back == ["c", "b", "a"]
    assert [(s.name, s.status, s.rollback) for s in report.steps] == [
        ("a", StepStatus.succeeded, RollbackStatus.rolled_back),
        ("b", StepStatus.succeeded, RollbackStatus.rolled_back),
        ("c", StepStatus.failed, RollbackStatus.rolled_back),
        ("d", StepStatus.pending, RollbackStatus.not_needed),
    ]


def test_a_step_returning_failure_rolls_back_like_a_raising_one(
    make: Callable[..., Step], ctx: Ctx, mode: str
) -> None:
    registry = registry_of(make("a"), make("b", fail="result"))

    with pytest.raises(StepFailedError, match="Step 'b' failed: b said no") as caught:
        execute(Orchestrator(registry, ctx), mode)

    assert ctx.trace == ["exec a", "exec b", "undo b", "undo a"]
    assert caught.value.__cause__ is None
    assert [r.success for r in ctx.step_results] == [True, False]


def test_the_failing_step_receives_its_own_failed_result(ctx: Ctx) -> None:
    seen: list[StepResult] = []

    class Partial(Step):
        def rollback(self, context: Ctx, result: StepResult) -> None:
            seen.append(result)

    registry = registry_of(Partial("a", fail=ValueError("half done")))

    with pytest.raises(StepFailedError):
        Orchestrator(registry, ctx).execute()

    assert [(r.success, r.error) for r in seen] == [(False, "half done")]


def test_earlier_steps_receive_their_own_results_with_rollback_data(ctx: Ctx) -> None:
    seen: dict[str, dict[str, str]] = {}

    class Remember(Step):
        def rollback(self, context: Ctx, result: StepResult) -> None:
            seen[self.name] = result.rollback_data

    registry = registry_of(Remember("a"), Remember("b"), Step("c", fail=ValueError("x")))

    with pytest.raises(StepFailedError):
        Orchestrator(registry, ctx).execute()

    assert seen == {"b": {"undo": "b"}, "a": {"undo": "a"}}


def test_a_failing_rollback_is_recorded_and_the_others_still_run(
    make: Callable[..., Step], ctx: Ctx, mode: str
) -> None:
    registry = registry_of(make("a"), make("b", undo_fails=True), make("c", fail=ValueError("c")))

    with pytest.raises(StepFailedError) as caught:
        execute(Orchestrator(registry, ctx), mode)

    assert ctx.trace == ["exec a", "exec b", "exec c", "undo c", "undo b", "undo a"]
    report = caught.value.report
    assert report.step("b").rollback is RollbackStatus.failed
    assert report.step("b").rollback_error == "cannot undo b"
    assert isinstance(report.step("b").rollback_exception, OSError)
    assert report.rollback_failures == ["b"]
    assert report.rolled_back == ["c", "a"]
    assert ctx.errors == ["Rollback failed for step 'b'"]
    assert "b failed" in report.summary()


def test_skipped_steps_are_not_rolled_back(make: Callable[..., Step], ctx: Ctx, mode: str) -> None:
    registry = registry_of(make("a"), make("b", skip=True), make("c", fail=ValueError("c")))

    with pytest.raises(StepFailedError) as caught:
        execute(Orchestrator(registry, ctx), mode)

    assert ctx.trace == ["exec a", "exec c", "undo c", "undo a"]
    assert caught.value.report.step("b").status is StepStatus.skipped
    assert caught.value.report.step("b").rollback is RollbackStatus.not_needed


def test_a_step_without_rollback_is_nothing_to_undo_not_rolled_back(ctx: Ctx) -> None:
    registry = registry_of(Step("a"), NoUndoStep("b"), Step("c", fail=ValueError("c")))

    with pytest.raises(StepFailedError) as caught:
        Orchestrator(registry, ctx).execute()

    assert ctx.trace == ["exec a", "exec b", "exec c", "undo c", "undo a"]
    assert caught.value.report.step("b").rollback is RollbackStatus.not_supported
    assert caught.value.report.rolled_back == ["c", "a"]


def test_an_irreversible_step_keeps_the_steps_before_it(ctx: Ctx) -> None:
    registry = registry_of(
        Step("a"), Step("publish", irreversible=True), Step("c"), Step("d", fail=ValueError("d"))
    )

    with pytest.raises(StepFailedError) as caught:
        Orchestrator(registry, ctx).execute()

    assert ctx.trace == ["exec a", "exec publish", "exec c", "exec d", "undo d", "undo c"]
    report = caught.value.report
    assert report.pivot == "publish"
    assert report.step("a").rollback is RollbackStatus.not_needed
    assert report.step("publish").rollback is RollbackStatus.not_needed
    assert "irreversible 'publish'" in report.summary()


def test_an_error_in_can_skip_rolls_back_what_was_done_before(ctx: Ctx) -> None:
    class BadSkip(Step):
        def can_skip(self, context: Ctx) -> bool:
            raise LookupError("cannot decide")

    registry = registry_of(Step("a"), BadSkip("b"), Step("c"))

    with pytest.raises(StepFailedError, match="Step 'b' failed: cannot decide") as caught:
        Orchestrator(registry, ctx).execute()

    assert ctx.trace == ["exec a", "undo a"]
    assert caught.value.report.step("b").rollback is RollbackStatus.not_needed
    assert isinstance(caught.value.__cause__, LookupError)


def test_an_error_in_before_step_rolls_back_what_was_done_before(ctx: Ctx) -> None:
    def before(name: str, context: object) -> None:
        if name == "b":
            raise RuntimeError("before_step hook failed")

    with pytest.raises(StepFailedError, match="before_step hook failed"):
        Orchestrator(registry_of(Step("a"), Step("b")), ctx, before_step=before).execute()

    assert ctx.trace == ["exec a", "undo a"]


@pytest.mark.parametrize("returned", [None, {"success": True}, True])
def test_a_step_returning_something_else_than_a_step_result_fails_and_rolls_back(
    ctx: Ctx, returned: object
) -> None:
    class Sloppy(Step):
        def execute(self, context: Ctx) -> StepResult:
            super().execute(context)
            return returned  # type: ignore[return-value]

    with pytest.raises(StepFailedError, match="expected StepResult") as caught:
        Orchestrator(registry_of(Step("a"), Sloppy("b")), ctx).execute()

    assert ctx.trace == ["exec a", "exec b", "undo b", "undo a"]
    assert isinstance(caught.value.__cause__, TypeError)


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, SystemExit])
def test_an_interrupt_mid_step_rolls_back_then_propagates(
    make: Callable[..., Step], ctx: Ctx, mode: str, interrupt: type[BaseException]
) -> None:
    orchestrator = Orchestrator(registry_of(make("a"), make("b", fail=interrupt())), ctx)

    with pytest.raises(interrupt):
        execute(orchestrator, mode)

    assert ctx.trace == ["exec a", "exec b", "undo b", "undo a"]
    assert orchestrator.report is not None
    assert orchestrator.report.outcome is RunOutcome.failed
    assert orchestrator.report.step("b").status is StepStatus.failed
    assert ctx.current_step is None


def test_an_observer_error_fails_the_step_and_rolls_back(ctx: Ctx) -> None:
    class Fragile:
        def on_event(self, event: object) -> None:
            if getattr(event, "type", None) is EventType.step_succeeded:
                raise ConnectionError("store is down")

    with pytest.raises(StepFailedError, match="store is down"):
        Orchestrator(registry_of(Step("a"), Step("b")), ctx, observers=[Fragile()]).execute()

    assert ctx.trace == ["exec a", "undo a"]


def test_rollback_logs_are_attributed_to_the_step_being_rolled_back(ctx: Ctx) -> None:
    seen: list[str | None] = []

    class Where(Step):
        def rollback(self, context: Ctx, result: StepResult) -> None:
            seen.append(context.current_step)

    registry = registry_of(Where("a"), Where("b"), Where("c", fail=ValueError("c")))

    with pytest.raises(StepFailedError):
        Orchestrator(registry, ctx).execute()

    assert seen == ["c", "b", "a"]
    assert ctx.current_step is None


def test_a_failure_on_the_first_step_rolls_back_only_that_step(ctx: Ctx) -> None:
    with pytest.raises(StepFailedError) as caught:
        Orchestrator(registry_of(Step("a", fail=ValueError("a")), Step("b")), ctx).execute()

    assert ctx.trace == ["exec a", "undo a"]
    assert caught.value.report.rolled_back == ["a"]


def test_an_empty_registry_succeeds_with_nothing_executed(ctx: Ctx) -> None:
    result = Orchestrator(registry_of(), ctx).execute()

    assert result == {"success": True, "steps_executed": 0, "steps_total": 0}


def test_the_report_is_json_ready(ctx: Ctx) -> None:
    import json

    with pytest.raises(StepFailedError) as caught:
        Orchestrator(registry_of(Step("a"), Step("b", fail=ValueError("b"))), ctx).execute()

    data = json.loads(json.dumps(caught.value.report.as_dict()))
    assert data["outcome"] == "failed"
    assert [(s["name"], s["status"], s["rollback"]) for s in data["steps"]] == [
        ("a", "succeeded", "rolled_back"),
        ("b", "failed", "rolled_back"),
    ]


def test_base_step_rollback_default_is_a_no_op_and_not_supported() -> None:
    class Plain(BaseStep[Ctx]):
        name = "plain"
        progress_weight = 1.0

        def execute(self, context: Ctx) -> StepResult:
            return StepResult()

    step, context = Plain(), Ctx(RuntimeContext())
    assert step.supports_rollback is False
    assert step.rollback(context, StepResult()) is None
    assert step.can_skip(context) is False
