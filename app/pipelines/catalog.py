"""Pipelines as the service knows them: a name, a params model, and how to build a run.

A pipeline can be defined by a ``BaseAction`` subclass (with ``setup_steps``), by a step
class or instance (a one-step pipeline), or by a plain list of steps. An action may declare
the ``resources`` each of its runs needs (``app.pipelines.resources``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from app.pipelines.resources import Resources, resources_of
from steps import (
    ActionParams,
    BaseAction,
    BaseStep,
    BaseStepContext,
    Recovery,
    RetryPolicy,
    RuntimeContext,
    StepRegistry,
)

__all__ = [
    "Pipeline",
    "PipelineStep",
    "Resources",
    "RunPlan",
    "concurrency_limits",
    "pipeline_from",
]


@dataclass(frozen=True, slots=True)
class PipelineStep:
    """How a step presents itself in the catalogue."""

    name: str
    weight: float
    can_rollback: bool
    irreversible: bool
    timeout: float | None
    retry: RetryPolicy | None


@dataclass(slots=True)
class RunPlan:
    """What one run executes: its steps, its context, and how to read its result."""

    registry: StepRegistry[Any]
    context: BaseStepContext
    result: Callable[[BaseStepContext], dict[str, Any]]


Builder = Callable[[BaseModel, RuntimeContext], RunPlan]


@dataclass(frozen=True)
class Pipeline:
    """A registered pipeline."""

    name: str
    title: str
    description: str
    params_model: type[BaseModel]
    builder: Builder
    recovery: Recovery = Recovery.rollback
    resources: Resources = field(default_factory=Resources)
    max_concurrency: int | None = None

    def plan(self, params: BaseModel, runtime: RuntimeContext) -> RunPlan:
        """A fresh registry and context for one run with ``params``."""
        return self.builder(params, runtime)

    def steps_for(self, params: BaseModel) -> list[PipelineStep]:
        """The steps a run with ``params`` would execute."""
        registry = self.plan(params, RuntimeContext()).registry
        weights = registry.normalized_weights()
        return [
            PipelineStep(
                name=step.name,
                weight=weights[step.name],
                can_rollback=step.supports_rollback,
                irreversible=bool(step.irreversible),
                timeout=step.timeout,
                retry=step.retry_policy,
            )
            for step in registry.get_steps()
        ]

    def default_steps(self) -> list[PipelineStep]:
        """The steps with default params (or none, if the params have required fields)."""
        try:
            params = self.params_model.model_validate({})
        except ValueError:
            return []
        return self.steps_for(params)

    def params_schema(self) -> dict[str, Any]:
        return self.params_model.model_json_schema()


def _snake(name: str) -> str:
    # OCRScan -> ocr_scan, UploadFiles -> upload_files
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()


def _first_line(text: str | None) -> str:
    return (text or "").strip().split("\n\n")[0].replace("\n", " ").strip()


def _from_action(action: type[BaseAction[Any]]) -> Pipeline:
    name = action.name or _snake(action.__name__.removesuffix("Action"))

    def build(params: BaseModel, runtime: RuntimeContext) -> RunPlan:
        instance = action(params, runtime)
        return RunPlan(instance.build_registry(), instance.create_context(), instance.result)

    return Pipeline(
        name=name,
        title=action.title or name,
        description=action.description or _first_line(action.__doc__),
        params_model=action.params_model,
        builder=build,
        recovery=Recovery(action.recovery),
        # Not an attribute of BaseAction: the step library knows nothing of executors.
        resources=resources_of(getattr(action, "resources", None)),
        max_concurrency=_max_concurrency(action),
    )


def _max_concurrency(action: type[BaseAction[Any]]) -> int | None:
    """How many runs of the action may execute at once, anywhere (None: no cap)."""
    value = getattr(action, "max_concurrency", None)  # as resources: none of the library's
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(
            f"{action.__name__}.max_concurrency must be a whole number >= 1, not {value!r}"
        )
    return value


def concurrency_limits(pipelines: Mapping[str, Pipeline]) -> dict[str, int]:
    """The caps the pipelines declare, by name, for ``Store.claim_queued``."""
    return {
        name: p.max_concurrency for name, p in pipelines.items() if p.max_concurrency is not None
    }


def _from_steps(name: str, make_steps: Callable[[], Sequence[BaseStep[Any]]], doc: str) -> Pipeline:
    def build(params: BaseModel, runtime: RuntimeContext) -> RunPlan:
        registry: StepRegistry[Any] = StepRegistry()
        for step in make_steps():
            registry.register(step)
        return RunPlan(registry, BaseStepContext(runtime), lambda context: {})

    return Pipeline(name, name, doc, ActionParams, build)


def pipeline_from(obj: object, name: str | None = None) -> Pipeline:
    """Make a pipeline of ``obj``; ``name`` names a list of steps (its attribute name)."""
    if isinstance(obj, Pipeline):
        return obj
    if isinstance(obj, type) and issubclass(obj, BaseAction):
        return _from_action(obj)
    if isinstance(obj, type) and issubclass(obj, BaseStep):
        step_class = obj
        step = step_class()
        return _from_steps(step.name, lambda: [step_class()], _first_line(step_class.__doc__))
    if isinstance(obj, BaseStep):
        return _from_steps(obj.name, lambda: [obj], _first_line(type(obj).__doc__))
    if isinstance(obj, list | tuple) and obj and all(isinstance(s, BaseStep) for s in obj):
        if name is None:
            raise TypeError("a list of steps needs a name: refer to it as module:attr")
        steps = list(obj)
        return _from_steps(name, lambda: steps, f"Steps: {', '.join(s.name for s in steps)}")
    raise TypeError(
        f"{obj!r} does not define a pipeline: use a BaseAction subclass, a step class or "
        "instance, or a list of steps"
    )
