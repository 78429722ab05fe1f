"""Telling coroutine functions from plain ones, once, where a step is looked at.

``inspect`` would answer too, but importing it costs more than the rest of ``steps``.
"""

from __future__ import annotations

import functools
from typing import Any

__all__ = ["is_async_callable"]

_CO_COROUTINE = 0x0080  # inspect.CO_COROUTINE


def _is_coroutine_function(obj: Any) -> bool:
    while True:
        obj = getattr(obj, "__func__", obj)  # bound methods
        if not isinstance(obj, functools.partial):
            break
        obj = obj.func
    code = getattr(obj, "__code__", None)
    return code is not None and bool(code.co_flags & _CO_COROUTINE)


def is_async_callable(obj: Any) -> bool:
    """True for an ``async def`` function or method, a partial of one, or an object whose
    ``__call__`` is one."""
    code = getattr(getattr(obj, "__func__", obj), "__code__", None)
    if code is not None:  # the common case: a function or a bound method
        return bool(code.co_flags & _CO_COROUTINE)
    if _is_coroutine_function(obj):
        return True
    call = getattr(type(obj), "__call__", None)  # noqa: B004 - we need the method, not a bool
    return call is not None and _is_coroutine_function(call)
