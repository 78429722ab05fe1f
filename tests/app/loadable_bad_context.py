"""A pipeline whose context holds a field JSON cannot represent."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from steps import BaseAction, BaseStep, BaseStepContext, StepRegistry, StepResult


@dataclass
class Locked(BaseStepContext):
    lock: Any = field(default_factory=threading.Lock)


class Noop(BaseStep[Locked]):
    name = "noop"
    progress_weight = 1.0

    def execute(self, context: Locked) -> StepResult:
        return StepResult()


class Uncheckpointable(BaseAction[Any]):
    name = "uncheckpointable"

    def create_context(self) -> BaseStepContext:
        return Locked(self.runtime_ctx)

    def setup_steps(self, registry: StepRegistry[Any]) -> None:
        registry.register(Noop())


PIPELINES = [Uncheckpointable]
