"""A pipeline the dashboard tests hold at a step until a file appears (the server runs in
another process, so the test opens the gate by creating the file)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from steps import BaseAction, BaseStep, Recovery, StepRegistry, StepResult
from tests.app.pipelines import Named, ParamsAction, wait_for_file

GATE_TIMEOUT = 60.0


class GatedParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    gate: str = Field(description="A path: the step 'wait' waits until a file is there.")
    logs: int = Field(2, ge=0, description="Lines each step writes to the log.")


class Gated(Named):
    """A step with nothing to undo (no ``rollback``)."""

    def execute(self, context: Any) -> StepResult:
        params: GatedParams = context.params
        for i in range(params.logs):
            context.log("line", {"step": self.name, "n": i})
        if self.name == "wait":
            context.set_progress(0.5)
            wait_for_file(context, params.gate, GATE_TIMEOUT)
        return StepResult(data={"done": self.name})


class Undoable(Gated):
    """A step that undoes what it did."""

    def rollback(self, context: Any, result: StepResult) -> None:
        context.log("undone", {"step": self.name})


class GatedAction(ParamsAction[GatedParams]):
    """fetch (undo) → prepare (no undo) → wait (held by a file; undo) → finish; each step
    logs; an interrupted run resumes."""

    name = "gated"
    title = "Gated"
    description = "Four steps; the third waits for a file."
    recovery = Recovery.resume

    def setup_steps(self, registry: StepRegistry[Any]) -> None:
        for step in (
            Undoable("fetch", 0.2),
            Gated("prepare", 0.3),
            Undoable("wait", 0.4),
            Gated("finish", 0.1),
        ):
            registry.register(step)


class Target(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str
    port: int = 22


class ShapesParams(BaseModel):
    """One parameter of each shape the start form knows."""

    model_config = ConfigDict(extra="forbid")

    count: int = Field(ge=1, description="Required, a number.")
    mode: Literal["fast", "careful"] = "fast"
    dry_run: bool = False
    ratio: float = 0.5
    tags: list[str] = Field(default_factory=list)
    sizes: list[int] = Field(default_factory=lambda: [1, 2])
    colours: list[Literal["red", "green", "blue"]] = Field(default_factory=lambda: ["red"])
    note: str | None = None
    target: Target = Field(default_factory=lambda: Target(host="localhost"))


class Done(BaseStep[Any]):
    name = "done"
    progress_weight = 1.0

    def execute(self, context: Any) -> StepResult:
        return StepResult()


class ShapesAction(BaseAction[ShapesParams]):
    """One step; params of every shape."""

    name = "shapes"

    def setup_steps(self, registry: StepRegistry[Any]) -> None:
        registry.register(Done())


PIPELINES = [GatedAction, ShapesAction]
