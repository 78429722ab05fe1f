"""The seed document's example runs exactly as written, with imports from ``steps``."""

from __future__ import annotations

from typing import Any

SEED_EXAMPLE = """\
from steps import BaseStep, StepResult, StepRegistry, Orchestrator, BaseStepContext, RuntimeContext
from dataclasses import dataclass, field

@dataclass
class MyContext(BaseStepContext):
    data: list[str] = field(default_factory=list)
    processed_count: int = 0

class LoadDataStep(BaseStep[MyContext]):
    @property
    def name(self) -> str: return 'load_data'
    @property
    def progress_weight(self) -> float: return 0.2
    def execute(self, context: MyContext) -> StepResult:
        context.data = ['item1', 'item2', 'item3']
        return StepResult(success=True)

class ProcessDataStep(BaseStep[MyContext]):
    @property
    def name(self) -> str: return 'process_data'
    @property
    def progress_weight(self) -> float: return 0.7
    def execute(self, context: MyContext) -> StepResult:
        for item in context.data:
            context.processed_count += 1
        return StepResult(success=True)
    def rollback(self, context: MyContext, result: StepResult) -> None:
        context.processed_count = 0

class FinalizeStep(BaseStep[MyContext]):
    @property
    def name(self) -> str: return 'finalize'
    @property
    def progress_weight(self) -> float: return 0.1
    def execute(self, context: MyContext) -> StepResult:
        return StepResult(success=True, data={'processed': context.processed_count})

runtime_ctx = RuntimeContext()
registry = StepRegistry[MyContext]()
registry.register(LoadDataStep())
registry.register(ProcessDataStep())
registry.register(FinalizeStep())
context = MyContext(runtime_ctx=runtime_ctx)
orchestrator = Orchestrator(registry, context)
result = orchestrator.execute()
"""


def run_seed_example() -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": "seed_example"}
    exec(compile(SEED_EXAMPLE, "seed_example.py", "exec", dont_inherit=True), namespace)
    return namespace


def test_seed_example_returns_the_documented_summary() -> None:
    namespace = run_seed_example()

    assert namespace["result"] == {"success": True, "steps_executed": 3, "steps_total": 3}


def test_seed_example_leaves_the_context_as_the_steps_left_it() -> None:
    namespace = run_seed_example()
    context = namespace["context"]

    assert context.data == ["item1", "item2", "item3"]
    assert context.processed_count == 3
    assert context.current_step is None
    assert [r.data for r in context.step_results] == [{}, {}, {"processed": 3}]


def test_seed_example_reports_weighted_progress_0_2_then_0_9_then_1() -> None:
    namespace = run_seed_example()
    report = namespace["orchestrator"].report

    assert [s.weight for s in report.steps] == [0.2, 0.7, 0.1]
    assert report.progress == 1.0
