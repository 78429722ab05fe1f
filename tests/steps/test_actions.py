"""Actions: a params model plus setup_steps run through the orchestrator."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from steps import (
    BaseAction,
    BaseExportAction,
    BaseStep,
    BaseStepContext,
    BaseTrainAction,
    BaseUploadAction,
    ExportContext,
    RuntimeContext,
    StepFailedError,
    StepRegistry,
    StepResult,
    TrainContext,
    UploadContext,
)


class UploadParams(BaseModel):
    files: list[str]
    fail_at: str | None = None


class Named(BaseStep[Any]):
    def __init__(self, name: str, weight: float, work: Any = None) -> None:
        self._name, self._weight, self.work = name, weight, work

    @property
    def name(self) -> str:
        return self._name

    @property
    def progress_weight(self) -> float:
        return self._weight

    def execute(self, context: Any) -> StepResult:
        if getattr(context, "params", {}).get("fail_at") == self.name:
            raise OSError(f"{self.name} broke")
        if self.work is not None:
            self.work(context)
        return StepResult()

    def rollback(self, context: Any, result: StepResult) -> None:
        context.errors.append(f"undid {self.name}")


class MyUpload(BaseUploadAction[UploadParams]):
    name = "my_upload"

    def setup_steps(self, registry: StepRegistry[UploadContext]) -> None:
        registry.register(Named("initialize", 0.1))
        registry.register(Named("validate", 0.1))
        registry.register(
            Named("upload", 0.7, lambda c: c.uploaded_files.extend(c.params["files"]))
        )
        registry.register(Named("cleanup", 0.1))


def test_params_model_comes_from_the_type_argument() -> None:
    assert MyUpload.params_model is UploadParams


def test_an_upload_action_runs_its_steps_and_reports_what_it_uploaded() -> None:
    progress: list[float] = []

    result = MyUpload({"files": ["a.png", "b.png"]}).run(
        progress_callback=lambda c, t: progress.append(c)
    )

    assert result == {
        "success": True,
        "steps_executed": 4,
        "steps_total": 4,
        "uploaded_files": 2,
        "data_units": 0,
    }
    assert progress == [10.0, 20.0, 90.0, 100.0]


def test_an_action_failure_rolls_back_in_reverse() -> None:
    action = MyUpload({"files": ["a"], "fail_at": "upload"})
    orchestrator = action.orchestrator()

    with pytest.raises(StepFailedError, match="upload broke"):
        orchestrator.execute()

    assert orchestrator.context.errors == ["undid upload", "undid validate", "undid initialize"]


def test_invalid_params_are_rejected_before_anything_runs() -> None:
    with pytest.raises(ValidationError):
        MyUpload({"files": "not-a-list"})


def test_params_may_be_given_as_a_model_instance() -> None:
    params = UploadParams(files=["x"])

    assert MyUpload(params).params is params


def test_run_async_works_too() -> None:
    result = asyncio.run(MyUpload({"files": ["a"]}).run_async())

    assert result["uploaded_files"] == 1


def test_train_and_export_actions_report_their_own_fields() -> None:
    class Train(BaseTrainAction[BaseModel]):
        def setup_steps(self, registry: StepRegistry[TrainContext]) -> None:
            registry.register(Named("dataset", 0.2))
            registry.register(Named("train", 0.6, lambda c: setattr(c, "model_id", 42)))
            registry.register(Named("upload", 0.2))

    class Export(BaseExportAction[BaseModel]):
        def setup_steps(self, registry: StepRegistry[ExportContext]) -> None:
            registry.register(Named("export", 1, lambda c: setattr(c, "exported_count", 7)))

    assert Train().run()["model_id"] == 42
    assert Export().run()["exported_count"] == 7


def test_an_action_without_steps_runs_execute_or_says_what_is_missing() -> None:
    class Direct(BaseAction[BaseModel]):
        def execute(self) -> Any:
            return {"direct": True}

    class Empty(BaseAction[BaseModel]):
        pass

    assert Direct().run() == {"direct": True}
    with pytest.raises(RuntimeError, match="registered no steps"):
        Empty().run()


def test_a_custom_context_factory_is_used() -> None:
    @dataclass
    class Custom(BaseStepContext):
        greeting: str = ""

    class Greeter(BaseAction[BaseModel]):
        def create_context(self) -> Custom:
            return Custom(runtime_ctx=self.runtime_ctx, greeting="hello")

        def setup_steps(self, registry: StepRegistry[Any]) -> None:
            registry.register(Named("greet", 1, lambda c: c.errors.append(c.greeting)))

    action = Greeter(runtime_ctx=RuntimeContext(run_id="r1"))
    orchestrator = action.orchestrator()
    orchestrator.execute()

    assert orchestrator.context.errors == ["hello"]
    assert orchestrator.context.runtime_ctx.run_id == "r1"


def test_the_default_params_model_forbids_unknown_fields() -> None:
    class NoParams(BaseAction):  # type: ignore[type-arg]
        pass

    with pytest.raises(ValidationError):
        NoParams({"surprise": 1})
