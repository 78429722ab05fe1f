"""The demo pipelines behave as the README says, in-process and from the terminal."""

from __future__ import annotations

import subprocess
import sys

import pytest

from app.pipelines.demos import FlakyAction, TrainAction, UploadAction
from steps import EventType, RollbackStatus, StepEvent, StepFailedError

FAST = {"step_seconds": 0}


class Recorder:
    def __init__(self) -> None:
        self.events: list[StepEvent] = []

    def on_event(self, event: StepEvent) -> None:
        self.events.append(event)


def test_upload_runs_its_four_steps_with_per_file_progress() -> None:
    recorder = Recorder()

    result = UploadAction({**FAST, "files": 4}).run(observers=[recorder])

    assert result["uploaded_files"] == 4
    started = [e.step for e in recorder.events if e.type is EventType.step_started]
    assert started == ["initialize", "validate", "upload", "cleanup"]
    progress = [e.progress for e in recorder.events if e.type is EventType.step_progress]
    assert progress == [0.35, 0.55, 0.75, 0.95]


def test_train_weighs_dataset_20_train_60_upload_20_with_sub_progress() -> None:
    recorder = Recorder()

    result = TrainAction({**FAST, "epochs": 3}).run(observers=[recorder])

    assert result["model_id"] == 1
    done = [e.progress for e in recorder.events if e.type is EventType.step_succeeded]
    assert done == [0.2, 0.8, 1.0]
    inside = [e.progress for e in recorder.events if e.type is EventType.step_progress]
    assert inside == [0.4, 0.6, 0.8]


def test_flaky_fails_in_publish_and_rolls_back_everything_in_reverse() -> None:
    orchestrator = FlakyAction(FAST).orchestrator()

    with pytest.raises(StepFailedError, match="publish target refused") as caught:
        orchestrator.execute()

    report = caught.value.report
    assert report.failed_step == "publish"
    assert report.rolled_back == ["publish", "transform", "prepare"]
    assert {s.rollback for s in report.steps} == {RollbackStatus.rolled_back}


def test_demo_params_have_defaults_and_reject_unknown_fields() -> None:
    from pydantic import ValidationError

    assert UploadAction().params.step_seconds > 0  # type: ignore[attr-defined]
    with pytest.raises(ValidationError):
        TrainAction({"epochs": 0})
    with pytest.raises(ValidationError):
        FlakyAction({"surprise": True})


@pytest.mark.parametrize(("pipeline", "code"), [("train", 0), ("upload", 0), ("flaky", 1)])
def test_the_terminal_demo_draws_progress_and_exits_with_the_outcome(
    pipeline: str, code: int
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "app", "demo", pipeline, "--step-seconds", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == code, done.stderr
    assert "100.0%" in done.stdout or "rolled_back" in done.stdout
    assert "run.succeeded" in done.stdout or "run.failed" in done.stdout
