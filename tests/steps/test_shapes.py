"""Names and shapes of the public API, as code written for the reference expects them."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import UTC, datetime

import pytest

from steps import BaseStep, BaseStepContext, RuntimeContext, StepResult


def test_step_result_defaults_mean_success_now_in_utc() -> None:
    before = datetime.now(UTC)
    result = StepResult()
    after = datetime.now(UTC)

    assert (result.success, result.data, result.error) == (True, {}, None)
    assert (result.rollback_data, result.skipped) == ({}, False)
    assert result.timestamp.tzinfo is UTC
    assert before <= result.timestamp <= after
    assert StepResult().data is not result.data


def test_base_step_requires_name_weight_and_execute() -> None:
    class Incomplete(BaseStep[BaseStepContext]):
        pass

    with pytest.raises(TypeError, match="abstract"):
        Incomplete()  # type: ignore[abstract]


def test_properties_can_be_plain_class_attributes() -> None:
    class Plain(BaseStep[BaseStepContext]):
        name = "plain"
        progress_weight = 0.5
        timeout = 2.0

        def execute(self, context: BaseStepContext) -> StepResult:
            return StepResult()

    step = Plain()
    assert (step.name, step.progress_weight, step.timeout) == ("plain", 0.5, 2.0)
    assert step.retry_policy is None
    assert step.irreversible is False
    assert step.is_async is False


def test_runtime_context_needs_no_arguments() -> None:
    runtime = RuntimeContext()

    assert runtime.logger is None
    assert runtime.run_id is None
    assert runtime.cancellation.cancelled is False
    runtime.log("nothing", {"listens": True})  # no logger: dropped quietly


def test_base_step_context_fields_and_defaults() -> None:
    runtime = RuntimeContext()
    context = BaseStepContext(runtime)

    assert context.runtime_ctx is runtime
    assert (context.step_results, context.errors) == ([], [])
    assert (context.current_step, context.current_step_order) == (None, None)
    assert [f.name for f in fields(context)][:3] == ["runtime_ctx", "step_results", "errors"]


def test_subclass_fields_may_be_declared_without_defaults() -> None:
    @dataclass
    class UploadContext(BaseStepContext):
        config_path: str
        retries: int = 3
        seen: list[str] = field(default_factory=list)

    context = UploadContext(RuntimeContext(), "/etc/app.toml")

    assert context.config_path == "/etc/app.toml"
    assert context.retries == 3


def test_set_metrics_outside_a_step_is_an_error() -> None:
    with pytest.raises(ValueError, match="needs a step"):
        BaseStepContext(RuntimeContext()).set_metrics({"loss": 0.1})


def test_set_progress_outside_a_run_is_accepted_and_ignored() -> None:
    BaseStepContext(RuntimeContext()).set_progress(1, 2)


def test_context_bookkeeping_stays_out_of_equality_and_repr() -> None:
    a, b = BaseStepContext(RuntimeContext()), BaseStepContext(RuntimeContext())
    b.runtime_ctx = a.runtime_ctx

    assert a == b
    assert "_reporter" not in repr(a)


def test_mark_user_failure_emitted() -> None:
    context = BaseStepContext(RuntimeContext())
    context.mark_user_failure_emitted()

    assert context.user_failure_message_emitted is True
