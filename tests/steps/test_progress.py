"""Weighted progress: Σ wᵢ·pᵢ / Σ wᵢ, normalised, monotonic, with sub-progress."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from steps import EventType, Orchestrator, WeightedProgress, normalize_weights

from .conftest import Ctx, Recorder, Step, execute, registry_of


def overall_after_each_step(recorder: Recorder) -> list[float]:
    done = {EventType.step_succeeded, EventType.step_skipped}
    return [e.progress for e in recorder.events if e.type in done]


def test_weights_0_2_0_7_0_1_report_0_2_then_0_9_then_1(
    make: Callable[..., Step], ctx: Ctx, mode: str
) -> None:
    recorder, callback = Recorder(), []
    registry = registry_of(make("a", 0.2), make("b", 0.7), make("c", 0.1))
    orchestrator = Orchestrator(
        registry, ctx, lambda c, t: callback.append((c, t)), observers=[recorder]
    )

    execute(orchestrator, mode)

    assert overall_after_each_step(recorder) == [0.2, 0.9, 1.0]
    assert callback == [(20.0, 100), (90.0, 100), (100.0, 100)]


def test_sub_progress_inside_a_step_moves_the_overall_value(
    make: Callable[..., Step], ctx: Ctx, mode: str
) -> None:
    def work(context: Ctx) -> None:
        for i in range(1, 5):
            context.set_progress(i, 4)

    recorder = Recorder()
    registry = registry_of(make("a", 0.2), make("train", 0.6, action=work), make("c", 0.2))

    execute(Orchestrator(registry, ctx, observers=[recorder]), mode)

    progress = [
        (e.step_progress, e.progress) for e in recorder.events if e.type is EventType.step_progress
    ]
    assert progress == [(0.25, 0.35), (0.5, 0.5), (0.75, 0.65), (1.0, 0.8)]


def test_set_progress_accepts_a_fraction(ctx: Ctx) -> None:
    recorder = Recorder()
    registry = registry_of(Step("a", 1, action=lambda c: c.set_progress(0.5)))

    Orchestrator(registry, ctx, observers=[recorder]).execute()

    assert [e.progress for e in recorder.events if e.type is EventType.step_progress] == [0.5]


@pytest.mark.parametrize(("current", "total"), [(1, 0), (5, 4), (-1, 4), (1.5, None)])
def test_set_progress_rejects_values_out_of_range(ctx: Ctx, current: float, total: float) -> None:
    with pytest.raises(ValueError, match="progress"):
        ctx.set_progress(current, total)


def test_weights_are_normalised_when_they_do_not_sum_to_one(ctx: Ctx) -> None:
    recorder = Recorder()
    registry = registry_of(Step("a", 2), Step("b", 6), Step("c", 2))

    Orchestrator(registry, ctx, observers=[recorder]).execute()

    assert overall_after_each_step(recorder) == [0.2, 0.8, 1.0]
    assert registry.normalized_weights() == {"a": 0.2, "b": 0.6, "c": 0.2}
    assert registry.total_weight == 10


def test_all_zero_weights_count_every_step_equally(ctx: Ctx) -> None:
    recorder = Recorder()
    registry = registry_of(Step("a", 0), Step("b", 0), Step("c", 0), Step("d", 0))

    Orchestrator(registry, ctx, observers=[recorder]).execute()

    assert overall_after_each_step(recorder) == [0.25, 0.5, 0.75, 1.0]


def test_a_zero_weight_step_among_others_adds_nothing(ctx: Ctx) -> None:
    recorder = Recorder()
    registry = registry_of(Step("a", 0.5), Step("log", 0), Step("b", 0.5))

    Orchestrator(registry, ctx, observers=[recorder]).execute()

    assert overall_after_each_step(recorder) == [0.5, 0.5, 1.0]


def test_skipped_steps_count_as_done(make: Callable[..., Step], ctx: Ctx, mode: str) -> None:
    recorder = Recorder()
    registry = registry_of(make("a", 0.3), make("b", 0.5, skip=True), make("c", 0.2))

    result = execute(Orchestrator(registry, ctx, observers=[recorder]), mode)

    assert overall_after_each_step(recorder) == [0.3, 0.8, 1.0]
    assert result == {"success": True, "steps_executed": 2, "steps_total": 3}


def test_progress_never_moves_backwards(ctx: Ctx) -> None:
    def wobble(context: Ctx) -> None:
        for fraction in (0.5, 0.2, 0.7, 0.1, 1.0):
            context.set_progress(fraction)

    recorder = Recorder()
    registry = registry_of(Step("a", 1), Step("b", 1, action=wobble))

    Orchestrator(registry, ctx, observers=[recorder]).execute()

    values = [e.progress for e in recorder.events]
    assert values == sorted(values)
    assert values[-1] == 1.0


def test_progress_does_not_move_back_when_a_step_is_retried(ctx: Ctx) -> None:
    from steps import RetryPolicy

    policy = RetryPolicy(max_attempts=2, initial_delay=0, jitter=0)
    step = Step(
        "b",
        1,
        fail=ValueError("flaky"),
        fail_times=1,
        retry=policy,
        action=lambda c: c.set_progress(0.6 if len(c.trace) < 3 else 0.3),
    )
    recorder = Recorder()

    Orchestrator(registry_of(Step("a", 1), step), ctx, observers=[recorder]).execute()

    values = [e.progress for e in recorder.events]
    assert values == sorted(values)


@pytest.mark.parametrize("weight", [-0.1, float("nan"), float("inf")])
def test_registering_a_negative_or_non_finite_weight_is_an_error(weight: float) -> None:
    with pytest.raises(ValueError, match="progress_weight"):
        registry_of(Step("a", weight))


def test_normalize_weights_of_nothing_is_empty() -> None:
    assert normalize_weights([]) == []
    assert WeightedProgress([]).value == 0.0


def test_weighted_progress_clamps_fractions_to_the_step() -> None:
    progress = WeightedProgress([1, 1])

    assert progress.step_progress(0, 2.0) == 0.5
    assert progress.step_progress(1, -1.0) == 0.5
    assert progress.step_done(1) == 1.0
