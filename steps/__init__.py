"""Step pipelines: ordered steps with weighted progress, retries, cancellation and rollback.

The API follows the Synapse SDK step orchestration pattern, so code written for it runs with
only the import path changed. Importing ``steps`` loads the standard library only; the action
classes (which need pydantic) load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from steps.base import BaseStep
from steps.cancellation import CancellationToken, Cancelled
from steps.context import BaseStepContext, RuntimeContext, StepLogger
from steps.errors import OrchestrationError, RunCancelledError, StepFailedError, StepTimeoutError
from steps.events import EventType, StepEvent, StepObserver
from steps.orchestrator import Orchestrator
from steps.progress import WeightedProgress, normalize_weights
from steps.recovery import Recovery, StepCheckpoint
from steps.registry import StepRegistry
from steps.report import RollbackStatus, RunOutcome, RunReport, StepRecord, StepStatus
from steps.result import StepResult
from steps.retry import DEFAULT_RETRY_POLICY, RetryPolicy
from steps.wrappers import LoggingStep, TimingStep, ValidationStep, WrapperStep

if TYPE_CHECKING:
    from steps.actions import (
        ActionParams,
        BaseAction,
        BaseExportAction,
        BaseTrainAction,
        BaseUploadAction,
        ExportContext,
        TrainContext,
        UploadContext,
    )

_LAZY = frozenset(
    {
        "ActionParams",
        "BaseAction",
        "BaseExportAction",
        "BaseTrainAction",
        "BaseUploadAction",
        "ExportContext",
        "TrainContext",
        "UploadContext",
    }
)

__all__ = [
    "DEFAULT_RETRY_POLICY",
    "ActionParams",
    "BaseAction",
    "BaseExportAction",
    "BaseStep",
    "BaseStepContext",
    "BaseTrainAction",
    "BaseUploadAction",
    "CancellationToken",
    "Cancelled",
    "EventType",
    "ExportContext",
    "LoggingStep",
    "OrchestrationError",
    "Orchestrator",
    "Recovery",
    "RetryPolicy",
    "RollbackStatus",
    "RunCancelledError",
    "RunOutcome",
    "RunReport",
    "RuntimeContext",
    "StepCheckpoint",
    "StepEvent",
    "StepFailedError",
    "StepLogger",
    "StepObserver",
    "StepRecord",
    "StepRegistry",
    "StepResult",
    "StepStatus",
    "StepTimeoutError",
    "TimingStep",
    "TrainContext",
    "UploadContext",
    "ValidationStep",
    "WeightedProgress",
    "WrapperStep",
    "normalize_weights",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from steps import actions

        return getattr(actions, name)
    raise AttributeError(f"module 'steps' has no attribute {name!r}")
