"""StepRegistry: ordered, unique names, insertions by name."""

from __future__ import annotations

import pytest

from steps import StepRegistry

from .conftest import Ctx, Step, registry_of


def names(registry: StepRegistry[Ctx]) -> list[str]:
    return [s.name for s in registry]


def test_register_keeps_order_and_insert_before_after_place_by_name() -> None:
    registry = registry_of(Step("a"), Step("c"))
    registry.insert_before("c", Step("b"))
    registry.insert_after("c", Step("d"))

    assert names(registry) == ["a", "b", "c", "d"]
    assert [s.name for s in registry.get_steps()] == ["a", "b", "c", "d"]
    assert registry.get_step_orders() == {"a": 0, "b": 1, "c": 2, "d": 3}


def test_a_duplicate_name_is_an_error() -> None:
    registry = registry_of(Step("a"))

    with pytest.raises(ValueError, match="'a' is already registered"):
        registry.register(Step("a"))
    with pytest.raises(ValueError, match="already registered"):
        registry.insert_before("a", Step("a"))
    assert len(registry) == 1


def test_insert_next_to_a_missing_step_is_an_error() -> None:
    registry = registry_of(Step("a"))

    with pytest.raises(ValueError, match="Step 'nope' not found"):
        registry.insert_before("nope", Step("b"))
    with pytest.raises(ValueError, match="Step 'nope' not found"):
        registry.insert_after("nope", Step("b"))


def test_unregister_removes_by_name_and_ignores_unknown_names() -> None:
    registry = registry_of(Step("a"), Step("b"))
    registry.unregister("a")
    registry.unregister("nope")

    assert names(registry) == ["b"]


def test_len_bool_in_and_get() -> None:
    b = Step("b")
    registry = registry_of(Step("a"), b)

    assert len(registry) == 2
    assert bool(registry)
    assert not bool(StepRegistry[Ctx]())
    assert "a" in registry
    assert b in registry
    assert "z" not in registry
    assert Step("b") not in registry
    assert registry.get("b") is b
    with pytest.raises(KeyError):
        registry.get("z")
    assert repr(registry) == "StepRegistry(['a', 'b'])"


def test_get_steps_is_a_copy() -> None:
    registry = registry_of(Step("a"))
    registry.get_steps().clear()

    assert len(registry) == 1


def test_iterating_while_changing_the_registry_is_safe() -> None:
    registry = registry_of(Step("a"), Step("b"))

    for step in registry:
        registry.unregister(step.name)

    assert len(registry) == 0


def test_a_step_needs_a_name() -> None:
    with pytest.raises(ValueError, match="non-empty string name"):
        registry_of(Step(""))


def test_total_weight_is_the_plain_sum() -> None:
    assert registry_of(
        Step("a", 0.2), Step("b", 0.7), Step("c", 0.1)
    ).total_weight == pytest.approx(1)
