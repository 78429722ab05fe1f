"""What a pipeline declares its runs need, and how a bad declaration is refused."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest

from app.pipelines.catalog import pipeline_from
from app.pipelines.resources import Resources, resources_of
from steps import ActionParams, BaseAction, StepRegistry

from .pipelines import Noop


def action_declaring(declared: object) -> type[BaseAction[ActionParams]]:
    class Declaring(BaseAction[ActionParams]):
        name = "declaring"
        resources: ClassVar[object] = declared

        def setup_steps(self, registry: StepRegistry[Any]) -> None:
            registry.register(Noop("only"))

    return Declaring


def test_an_action_declares_resources_as_an_instance_or_a_mapping() -> None:
    as_instance = pipeline_from(action_declaring(Resources(num_gpus=1, memory=1024)))
    as_mapping = pipeline_from(action_declaring({"num_gpus": 1, "memory": 1024}))

    assert as_instance.resources == as_mapping.resources == Resources(num_gpus=1.0, memory=1024)
    assert as_mapping.resources.ray_options() == {"num_gpus": 1.0, "memory": 1024}


def test_nothing_declared_asks_for_nothing_but_the_executors_default() -> None:
    pipeline = pipeline_from([Noop("a")], name="plain")

    assert pipeline.resources == Resources()
    assert not pipeline.resources.declared
    assert pipeline.resources.ray_options() == {}


def test_custom_resources_go_to_ray_by_name() -> None:
    resources = resources_of({"num_cpus": 0.5, "resources": {"tpu": 2}})

    assert resources.ray_options() == {"num_cpus": 0.5, "resources": {"tpu": 2.0}}


@pytest.mark.parametrize(
    ("declared", "message"),
    [
        ({"gpus": 1}, "unknown resources"),
        ({"num_cpus": -1}, "finite number >= 0"),
        ({"num_gpus": float("nan")}, "finite number >= 0"),
        ({"num_cpus": True}, "must be a number"),
        ({"memory": 1.5}, "whole number of bytes"),
        ({"resources": {"tpu": "one"}}, "must be a number"),
        ({"resources": {"GPU": 1}}, "Ray's own"),
        ("4 CPUs", "a Resources or a mapping"),
    ],
)
def test_a_bad_declaration_is_refused_naming_what_is_wrong(declared: object, message: str) -> None:
    with pytest.raises((TypeError, ValueError), match=message):
        pipeline_from(action_declaring(declared))
