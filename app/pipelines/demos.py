"""Demo pipelines: watch weighted progress move and a failed run roll back.

- ``upload``: initialize → validate → upload → cleanup, with per-file sub-progress.
- ``train``: dataset 20 % → train 60 % (async, per-epoch sub-progress) → upload 20 %.
- ``flaky``: prepare → transform → publish, which fails, so the first steps roll back.

Every parameter has a default, and steps take ``step_seconds`` each, so that a person
watching the stream sees the progress move.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from app.pipelines._pause import pause, pause_async
from steps import (
    BaseStep,
    BaseTrainAction,
    BaseUploadAction,
    StepRegistry,
    StepResult,
    TrainContext,
    UploadContext,
)

__all__ = ["FlakyAction", "TrainAction", "UploadAction"]

DEFAULT_STEP_SECONDS = 2.0
MAX_STEP_SECONDS = 60.0


class DemoParams(BaseModel):
    """Parameters every demo takes."""

    model_config = ConfigDict(extra="forbid")

    step_seconds: float = Field(
        DEFAULT_STEP_SECONDS, ge=0, le=MAX_STEP_SECONDS, description="How long each step takes."
    )


class _DemoStep(BaseStep[Any]):
    """A step with a fixed name and weight that takes ``step_seconds``."""

    step_name: str = ""
    weight: float = 1.0

    @property
    def name(self) -> str:
        return self.step_name

    @property
    def progress_weight(self) -> float:
        return self.weight

    def seconds(self, context: Any) -> float:
        return float(context.params["step_seconds"])

    def execute(self, context: Any) -> StepResult:
        pause(context, self.seconds(context))
        return StepResult()


# -- upload ---------------------------------------------------------------------------------


class UploadParams(DemoParams):
    """Parameters of the ``upload`` demo."""

    files: int = Field(5, ge=1, le=1000, description="How many files to upload.")


class Initialize(_DemoStep):
    step_name, weight = "initialize", 0.05

    def execute(self, context: UploadContext) -> StepResult:
        pause(context, self.seconds(context))
        return StepResult(
            data={"workspace": "/tmp/upload"}, rollback_data={"remove": "/tmp/upload"}
        )

    def rollback(self, context: UploadContext, result: StepResult) -> None:
        context.log("workspace_removed", result.rollback_data)


class Validate(_DemoStep):
    step_name, weight = "validate", 0.1


class UploadFiles(_DemoStep):
    step_name, weight = "upload", 0.8

    def execute(self, context: UploadContext) -> StepResult:
        files = int(context.params["files"])
        for i in range(files):
            pause(context, self.seconds(context) / files)
            context.uploaded_files.append(f"file-{i + 1}")
            context.set_progress(i + 1, files)
        return StepResult(data={"uploaded": files})

    def rollback(self, context: UploadContext, result: StepResult) -> None:
        context.log("files_deleted", {"files": list(context.uploaded_files)})
        context.uploaded_files.clear()


class Cleanup(_DemoStep):
    step_name, weight = "cleanup", 0.05


class UploadAction(BaseUploadAction[UploadParams]):
    """Upload files: initialize → validate → upload → cleanup."""

    name = "upload"
    title = "Upload files"
    description = "Initialize a workspace, validate the input, upload files, clean up."

    def setup_steps(self, registry: StepRegistry[UploadContext]) -> None:
        for step in (Initialize(), Validate(), UploadFiles(), Cleanup()):
            registry.register(step)


# -- train ----------------------------------------------------------------------------------


class TrainParams(DemoParams):
    """Parameters of the ``train`` demo."""

    epochs: int = Field(5, ge=1, le=1000, description="Training epochs (sub-progress of train).")


class Dataset(_DemoStep):
    step_name, weight = "dataset", 0.2


class Train(_DemoStep):
    step_name, weight = "train", 0.6

    async def execute(self, context: TrainContext) -> StepResult:  # type: ignore[override]
        epochs = int(context.params["epochs"])
        for epoch in range(1, epochs + 1):
            await pause_async(self.seconds(context) / epochs)
            context.metrics["loss"] = round(1 / epoch, 4)
            context.set_progress(epoch, epochs)
        context.model_path = "/tmp/model.bin"
        return StepResult(data={"epochs": epochs, "loss": context.metrics["loss"]})


class UploadModel(_DemoStep):
    step_name, weight = "upload", 0.2

    def execute(self, context: TrainContext) -> StepResult:
        pause(context, self.seconds(context))
        context.model_id = 1
        return StepResult(data={"model_id": context.model_id})


class TrainAction(BaseTrainAction[TrainParams]):
    """Train a model: dataset 20 % → train 60 % → upload 20 %."""

    name = "train"
    title = "Train a model"
    description = "Fetch a dataset, train for a number of epochs, upload the model."

    def setup_steps(self, registry: StepRegistry[TrainContext]) -> None:
        for step in (Dataset(), Train(), UploadModel()):
            registry.register(step)


# -- flaky ----------------------------------------------------------------------------------


class Prepare(_DemoStep):
    step_name, weight = "prepare", 0.3

    def rollback(self, context: UploadContext, result: StepResult) -> None:
        context.log("prepare_undone", {})


class Transform(_DemoStep):
    step_name, weight = "transform", 0.3

    def rollback(self, context: UploadContext, result: StepResult) -> None:
        context.log("transform_undone", {})


class Publish(_DemoStep):
    step_name, weight = "publish", 0.4

    def execute(self, context: UploadContext) -> StepResult:
        pause(context, self.seconds(context) / 2)
        context.set_progress(0.5)
        raise ConnectionError("publish target refused the connection")

    def rollback(self, context: UploadContext, result: StepResult) -> None:
        context.log("publish_partial_undone", {})


class FlakyAction(BaseUploadAction[DemoParams]):
    """Fails in its third step, so the first steps visibly roll back."""

    name = "flaky"
    title = "A pipeline that fails"
    description = "prepare → transform → publish; publish fails and everything rolls back."

    def setup_steps(self, registry: StepRegistry[UploadContext]) -> None:
        for step in (Prepare(), Transform(), Publish()):
            registry.register(step)


PIPELINES = [UploadAction, TrainAction, FlakyAction]
