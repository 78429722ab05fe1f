"""A run's context as JSON: what recovery restores after a crash. No pickle.

The checkpoint holds the fields a pipeline adds to ``BaseStepContext`` (the library's own
bookkeeping is rebuilt from the stored steps). Only plain JSON values are accepted, so a
restored context is the context that was saved, not an approximation of it.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from steps import BaseStepContext

__all__ = ["CheckpointError", "checkpoint_of", "restore"]

_LIBRARY_FIELDS = frozenset(f.name for f in dataclasses.fields(BaseStepContext))


class CheckpointError(TypeError):
    """A context field holds a value that JSON cannot represent."""


def _own_fields(context: BaseStepContext) -> dict[str, Any]:
    return {
        f.name: getattr(context, f.name)
        for f in dataclasses.fields(context)
        if f.name not in _LIBRARY_FIELDS
    }


def checkpoint_of(context: BaseStepContext) -> dict[str, Any]:
    """The context's own fields as JSON values; ``CheckpointError`` names a field that is
    not one."""
    fields = _own_fields(context)
    for name, value in fields.items():
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise CheckpointError(
                f"context field {type(context).__name__}.{name} holds "
                f"{type(value).__name__}, which cannot be checkpointed as JSON: {exc}"
            ) from None
    return fields


def restore(context: BaseStepContext, checkpoint: dict[str, Any]) -> None:
    """Put the checkpointed fields back on a freshly built context."""
    names = set(_own_fields(context))
    for name, value in checkpoint.items():
        if name in names:
            setattr(context, name, value)
