"""Actions: a params model plus ``setup_steps`` make a runnable (and servable) pipeline.

This is the one module of ``steps`` that imports pydantic; ``import steps`` loads it only when
one of its names is first used.
"""

from __future__ import annotations

import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict

from steps._run import ProgressCallback
from steps.context import BaseStepContext, RuntimeContext
from steps.events import StepObserver
from steps.orchestrator import Orchestrator
from steps.recovery import Recovery
from steps.registry import StepRegistry

__all__ = [
    "ActionParams",
    "BaseAction",
    "BaseExportAction",
    "BaseTrainAction",
    "BaseUploadAction",
    "ExportContext",
    "TrainContext",
    "UploadContext",
]


class ActionParams(BaseModel):
    """Default params model: no parameters, unknown ones rejected."""

    model_config = ConfigDict(extra="forbid")


P = TypeVar("P", bound=BaseModel)


class BaseAction(Generic[P]):
    """A pipeline defined by a class: validated params, ordered steps, a context factory.

    Subclass ``BaseAction[MyParams]`` (the params model is taken from the type argument, or
    set ``params_model``), register steps in ``setup_steps``, and call ``run()``. Actions
    that register no steps run ``execute()`` instead, which they must then define.
    """

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    description: ClassVar[str] = ""
    params_model: ClassVar[type[BaseModel]] = ActionParams
    context_class: ClassVar[type[BaseStepContext]] = BaseStepContext
    recovery: ClassVar[Recovery] = Recovery.rollback
    """How a run interrupted by a crash is finished: roll back, or resume (idempotent steps)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "params_model" not in cls.__dict__:
            model = _params_model_from_bases(cls)
            if model is not None:
                cls.params_model = model

    def __init__(
        self,
        params: P | Mapping[str, Any] | None = None,
        runtime_ctx: RuntimeContext | None = None,
    ) -> None:
        if isinstance(params, BaseModel):
            self.params: P = params
        else:
            self.params = self.params_model.model_validate(params or {})  # type: ignore[assignment]
        self.runtime_ctx = runtime_ctx if runtime_ctx is not None else RuntimeContext()

    def setup_steps(self, registry: StepRegistry[Any]) -> None:
        """Register this action's steps, in order."""

    def create_context(self) -> BaseStepContext:
        """Build the context the steps share (override to fill your own fields)."""
        return self.context_class(runtime_ctx=self.runtime_ctx)

    def build_registry(self) -> StepRegistry[Any]:
        """A new registry holding this action's steps."""
        registry: StepRegistry[Any] = StepRegistry()
        self.setup_steps(registry)
        return registry

    def execute(self) -> Any:
        """The whole action in one call, for actions that register no steps."""
        raise RuntimeError(
            f"{type(self).__name__} registered no steps: override setup_steps() or execute()"
        )

    def orchestrator(
        self,
        *,
        progress_callback: ProgressCallback | None = None,
        observers: Iterable[StepObserver] = (),
    ) -> Orchestrator[Any]:
        """An orchestrator over a fresh registry and context of this action."""
        return Orchestrator(
            self.build_registry(),
            self.create_context(),
            progress_callback,
            observers=observers,
        )

    def run(
        self,
        *,
        progress_callback: ProgressCallback | None = None,
        observers: Iterable[StepObserver] = (),
    ) -> Any:
        """Execute the action's steps; return the orchestrator's summary plus ``result()``."""
        orchestrator = self.orchestrator(progress_callback=progress_callback, observers=observers)
        if not orchestrator.registry:
            return self.execute()
        summary = orchestrator.execute()
        return {**summary, **self.result(orchestrator.context)}

    async def run_async(
        self,
        *,
        progress_callback: ProgressCallback | None = None,
        observers: Iterable[StepObserver] = (),
    ) -> Any:
        """``run()`` on the running event loop (async steps awaited, sync ones in threads)."""
        orchestrator = self.orchestrator(progress_callback=progress_callback, observers=observers)
        if not orchestrator.registry:
            return self.execute()
        summary = await orchestrator.execute_async()
        return {**summary, **self.result(orchestrator.context)}

    def result(self, context: Any) -> dict[str, Any]:
        """Extra fields of the action's result, read from the finished context."""
        return {}


def _params_model_from_bases(cls: type) -> type[BaseModel] | None:
    for base in getattr(cls, "__orig_bases__", ()):
        for arg in typing.get_args(base):
            if isinstance(arg, type) and issubclass(arg, BaseModel) and arg is not BaseModel:
                return arg
    return None


@dataclass
class UploadContext(BaseStepContext):
    """Context of an upload: the params, what was uploaded, the data units created."""

    params: dict[str, Any] = field(default_factory=dict)
    uploaded_files: list[Any] = field(default_factory=list)
    data_units: list[Any] = field(default_factory=list)


@dataclass
class TrainContext(BaseStepContext):
    """Context of a training run: the dataset, metrics, and the model produced."""

    params: dict[str, Any] = field(default_factory=dict)
    dataset: Any = None
    metrics: dict[str, Any] = field(default_factory=dict)
    model_path: str | None = None
    model_id: Any = None


@dataclass
class ExportContext(BaseStepContext):
    """Context of an export: counts and where the export was written."""

    params: dict[str, Any] = field(default_factory=dict)
    exported_count: int = 0
    failed_count: int = 0
    total_count: int = 0
    output_path: str | None = None


class _ParamsContextAction(BaseAction[P]):
    def create_context(self) -> BaseStepContext:
        return self.context_class(  # type: ignore[call-arg]
            runtime_ctx=self.runtime_ctx, params=self.params.model_dump()
        )


class BaseUploadAction(_ParamsContextAction[P]):
    """An upload (for example initialize → validate → upload → cleanup)."""

    context_class = UploadContext

    def result(self, context: Any) -> dict[str, Any]:
        return {
            "uploaded_files": len(context.uploaded_files),
            "data_units": len(context.data_units),
        }


class BaseTrainAction(_ParamsContextAction[P]):
    """A training run (for example dataset → train → upload)."""

    context_class = TrainContext

    def result(self, context: Any) -> dict[str, Any]:
        return {"model_id": context.model_id}


class BaseExportAction(_ParamsContextAction[P]):
    """An export of items to a destination."""

    context_class = ExportContext

    def result(self, context: Any) -> dict[str, Any]:
        return {
            "exported_count": context.exported_count,
            "failed_count": context.failed_count,
            "total_count": context.total_count,
            "output_path": context.output_path,
        }
