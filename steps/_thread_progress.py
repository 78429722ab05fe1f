"""Progress reported from a sync step's thread, handed over to the run's event loop.

Only the latest report matters (each one supersedes the one before), so the loop gets one
hand-over at a time, not one per report: a step reporting a million times must not queue a
million callbacks, nor take the GIL from the step thousands of times a second.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import asyncio

__all__ = ["THREAD_PROGRESS_INTERVAL", "Report", "ThreadProgress"]

Report = tuple[str | None, float]  # (step, fraction)

THREAD_PROGRESS_INTERVAL = 0.02
"""Seconds between two hand-overs to the loop of progress reported from a step's thread."""


class ThreadProgress:
    """The latest report from a step's thread, and whether a hand-over is on the loop.

    ``latest`` is written before ``handing`` is read, and ``handing`` is cleared on the loop
    before ``latest`` is read again, so the latest report is always handed over.
    ``BaseStepContext.set_progress`` writes ``latest`` itself while a sync step runs in its
    thread (a call less per report, and no look at which thread calls: steps run one at a
    time, so every report meanwhile is the running step's, and reaches the loop at the next
    hand-over); ``report`` is the same for reports from other threads at other times.
    """

    __slots__ = ("_hand_over", "_loop", "handed", "handing", "latest")

    def __init__(
        self, loop: asyncio.AbstractEventLoop, hand_over: Callable[[Report], None]
    ) -> None:
        self._loop = loop
        self._hand_over = hand_over
        self.latest: Report = (None, 0.0)
        self.handed: Report = self.latest  # the last report handed over
        self.handing = False  # a hand-over is scheduled on the loop

    def report(self, step: str | None, fraction: float) -> None:
        """From the step's thread."""
        self.latest = (step, fraction)
        if not self.handing:
            self.start()

    def start(self) -> None:
        """From the step's thread: schedule a hand-over of ``latest``."""
        self.handing = True
        self._loop.call_soon_threadsafe(self._from_thread)

    def flush(self) -> None:
        """On the loop, once the step's thread has returned: its last report, if not yet
        handed over, reaches the observers before the step's end does."""
        latest = self.latest
        if latest is not self.handed:
            self.handed = latest
            self._hand_over(latest)

    def _from_thread(self) -> None:
        latest = self.latest
        if latest is self.handed:  # nothing new since the last hand-over: close it
            self.handing = False
            if self.latest is latest:
                return
            self.handing = True  # a report landed meanwhile: take it
            latest = self.latest
        self.handed = latest
        self._hand_over(latest)
        # The hand-over stays open for a while: reports meanwhile only replace the value.
        self._loop.call_later(THREAD_PROGRESS_INTERVAL, self._from_thread)
