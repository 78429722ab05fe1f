"""What one run of a pipeline needs of the machine that executes it.

A pipeline declares it once; the Ray executor asks the cluster for it with each run (the
in-process pool, which has one machine and no scheduler, shows it and ignores it). An
action declares it as a class attribute, as it declares ``recovery``::

    class Train(BaseAction[TrainParams]):
        resources = Resources(num_cpus=4, num_gpus=1, memory=8 * 2**30)

or, to stay free of imports from the service, as a plain mapping with the same keys
(``resources = {"num_gpus": 1}``). Nothing declared means the executor's default (on Ray,
one CPU per run).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Resources", "resources_of"]


def _amount(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"resource {name!r} must be a number, not {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"resource {name!r} must be a finite number >= 0, not {value!r}")
    return float(value)


@dataclass(frozen=True, slots=True)
class Resources:
    """CPUs, GPUs (fractions allowed), memory in bytes, and custom cluster resources."""

    num_cpus: float | None = None
    num_gpus: float | None = None
    memory: int | None = None
    resources: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("num_cpus", "num_gpus"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, _amount(name, value))
        if self.memory is not None:
            if isinstance(self.memory, bool) or not isinstance(self.memory, int):
                raise TypeError(f"resource 'memory' must be a whole number of bytes, not "
                                f"{self.memory!r}")  # fmt: skip
            _amount("memory", self.memory)
        custom = {str(k): _amount(str(k), v) for k, v in dict(self.resources).items()}
        reserved = sorted(set(custom) & _RESERVED)
        if reserved:
            raise ValueError(
                f"custom resources {reserved} are Ray's own: declare num_cpus, num_gpus or "
                "memory instead"
            )
        object.__setattr__(self, "resources", custom)

    @property
    def declared(self) -> bool:
        return self != Resources()

    def ray_options(self) -> dict[str, Any]:
        """The options of a Ray task that needs these resources (only those declared)."""
        options: dict[str, Any] = {}
        if self.num_cpus is not None:
            options["num_cpus"] = self.num_cpus
        if self.num_gpus is not None:
            options["num_gpus"] = self.num_gpus
        if self.memory is not None:
            options["memory"] = self.memory
        if self.resources:
            options["resources"] = dict(self.resources)
        return options


_KEYS = frozenset({"num_cpus", "num_gpus", "memory", "resources"})
_RESERVED = frozenset({"CPU", "GPU", "memory", "object_store_memory"})


def resources_of(declared: object) -> Resources:
    """The ``Resources`` a pipeline declares: an instance, a mapping of its fields, or None."""
    if declared is None:
        return Resources()
    if isinstance(declared, Resources):
        return declared
    if isinstance(declared, Mapping):
        unknown = set(declared) - _KEYS
        if unknown:
            raise ValueError(
                f"unknown resources {sorted(map(str, unknown))}: declare {sorted(_KEYS)}, "
                "with custom cluster resources under 'resources'"
            )
        return Resources(**declared)
    raise TypeError(f"resources must be a Resources or a mapping, not {declared!r}")
