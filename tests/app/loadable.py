"""Pipelines defined in each way the loader accepts, for ``test_pipeline_loading``.

``PIPELINES`` lists an action and a step class; ``ingest`` is a list of steps (named by its
attribute); ``STAMP`` is a step instance; ``NOT_A_PIPELINE`` is not one.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from steps import BaseAction, BaseStep, RetryPolicy, StepRegistry, StepResult


class ReportParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str = Field("weekly", description="Heading of the report.")
    pages: int = Field(3, ge=1, le=100, description="How many pages to render.")


class _Step(BaseStep[Any]):
    name = ""
    progress_weight = 1.0

    def execute(self, context: Any) -> StepResult:
        return StepResult()


class Gather(_Step):
    name, progress_weight = "gather", 1.0
    retry_policy = RetryPolicy(max_attempts=3, initial_delay=0.1, retry_on=(ConnectionError,))

    def rollback(self, context: Any, result: StepResult) -> None:
        pass


class Render(_Step):
    name, progress_weight = "render", 3.0
    timeout = 30.0
    irreversible = True


class ReportAction(BaseAction[ReportParams]):
    """Render a report from gathered figures.

    This second paragraph is not part of the description.
    """

    def setup_steps(self, registry: StepRegistry[Any]) -> None:
        registry.register(Gather())
        registry.register(Render())


class Stamp(_Step):
    """Stamp the run with the time."""

    name = "stamp"


class Fetch(_Step):
    name, progress_weight = "fetch", 1.0

    def rollback(self, context: Any, result: StepResult) -> None:
        pass


class Store(_Step):
    name, progress_weight = "store", 3.0


ingest = [Fetch(), Store()]
STAMP = Stamp()
NOT_A_PIPELINE = {"steps": ["fetch"]}

PIPELINES = [ReportAction, Stamp]
