"""Finding pipelines at start-up: settings, the ``stepline.pipelines`` entry points, demos."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Iterable
from importlib.metadata import entry_points
from types import ModuleType

from app.pipelines.catalog import Pipeline, pipeline_from
from app.runs.checkpoint import checkpoint_of
from steps import BaseAction, RuntimeContext

__all__ = ["ENTRY_POINT_GROUP", "PipelineLoadError", "load_pipelines"]

ENTRY_POINT_GROUP = "stepline.pipelines"
DEMOS = "app.pipelines.demos"


class PipelineLoadError(RuntimeError):
    """A configured pipeline could not be loaded; the message names it."""


def load_pipelines(
    paths: Iterable[str], *, demos: bool = True, use_entry_points: bool = True
) -> dict[str, Pipeline]:
    """Every pipeline from ``paths`` (``module`` or ``module:attr``), entry points and demos."""
    found: dict[str, tuple[Pipeline, str]] = {}
    sources = ([DEMOS] if demos else []) + list(paths)
    for source in sources:
        for pipeline in _load_path(source):
            _add(found, pipeline, source)
    if use_entry_points:
        for entry in entry_points(group=ENTRY_POINT_GROUP):
            source = f"entry point {entry.name!r} ({entry.value})"
            try:
                obj = entry.load()
            except Exception as exc:
                raise PipelineLoadError(f"cannot load pipeline {source}: {exc}") from exc
            for pipeline in _pipelines_of(obj, entry.name, source):
                _add(found, pipeline, source)
    return {name: pipeline for name, (pipeline, _) in found.items()}


def _add(found: dict[str, tuple[Pipeline, str]], pipeline: Pipeline, source: str) -> None:
    try:
        pipeline.default_steps()  # builds its registry: duplicate step names, bad weights…
        _check_checkpointable(pipeline)
    except Exception as exc:
        raise PipelineLoadError(
            f"pipeline {pipeline.name!r} from {source} is not valid: {exc}"
        ) from exc
    if pipeline.name in found:
        raise PipelineLoadError(
            f"pipeline {pipeline.name!r} from {source} is already defined by "
            f"{found[pipeline.name][1]}"
        )
    found[pipeline.name] = (pipeline, source)


def _check_checkpointable(pipeline: Pipeline) -> None:
    try:
        params = pipeline.params_model.model_validate({})
    except ValueError:
        return  # required params: nothing to build a context from until a run comes
    checkpoint_of(pipeline.plan(params, RuntimeContext()).context)


def _load_path(path: str) -> list[Pipeline]:
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
        obj: object = module
        for part in filter(None, attr.split(".")):
            obj = getattr(obj, part)
    except Exception as exc:
        raise PipelineLoadError(f"cannot load pipeline {path!r}: {exc}") from exc
    return _pipelines_of(obj, attr.rsplit(".", 1)[-1] or None, repr(path))


def _pipelines_of(obj: object, name: str | None, source: str) -> list[Pipeline]:
    try:
        if isinstance(obj, ModuleType):
            return [pipeline_from(o) for o in _module_pipelines(obj)]
        return [pipeline_from(obj, name)]
    except Exception as exc:
        raise PipelineLoadError(f"pipeline {source} is not valid: {exc}") from exc


def _module_pipelines(module: ModuleType) -> list[object]:
    # A module lists its pipelines in PIPELINES, or else offers the actions it defines.
    declared = getattr(module, "PIPELINES", None)
    if declared is not None:
        return list(declared)
    return [
        obj
        for _, obj in inspect.getmembers(module, inspect.isclass)
        if issubclass(obj, BaseAction)
        and obj.__module__ == module.__name__
        and "setup_steps" in vars(obj)
    ]
