"""Cooperative cancellation shared between a run and whoever wants to stop it."""

from __future__ import annotations

import threading
from collections.abc import Callable

__all__ = ["CancellationToken", "Cancelled"]


class Cancelled(BaseException):
    """Raised inside a step when its run has been cancelled.

    It derives from ``BaseException`` so that a step's ``except Exception`` cannot swallow it.
    """


class CancellationToken:
    """A one-way switch: once cancelled, it stays cancelled.

    ``cancel()`` may be called from any thread or task. Callbacks registered with
    ``add_callback`` run once, in the thread that cancels (or at once if already cancelled).
    ``cancelled`` tells whether ``cancel()`` has been called.
    """

    __slots__ = ("_callbacks", "_event", "_lock", "cancelled", "reason")

    def __init__(self) -> None:
        self.cancelled = False  # a plain attribute, not a property: it is read per step
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[], None]] = []
        self.reason: str | None = None

    def cancel(self, reason: str | None = None) -> bool:
        """Request cancellation; return False if it had already been requested."""
        with self._lock:
            if self._event.is_set():
                return False
            self.reason = reason
            self.cancelled = True
            self._event.set()
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()
        return True

    def raise_if_cancelled(self) -> None:
        """Raise ``Cancelled`` if cancellation has been requested."""
        if self.cancelled:
            raise Cancelled(self.reason or "run cancelled")

    def wait(self, timeout: float | None = None) -> bool:
        """Block up to ``timeout`` seconds for cancellation; return whether it happened."""
        return self._event.wait(timeout)

    def add_callback(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Run ``callback`` on cancellation; return a function that unregisters it."""
        with self._lock:
            if not self._event.is_set():
                self._callbacks.append(callback)
                return lambda: self._remove(callback)
        callback()
        return lambda: None

    def _remove(self, callback: Callable[[], None]) -> None:
        with self._lock:
            if callback in self._callbacks:
                self._callbacks.remove(callback)

    def __repr__(self) -> str:
        state = f"cancelled, reason={self.reason!r}" if self.cancelled else "active"
        return f"CancellationToken({state})"
