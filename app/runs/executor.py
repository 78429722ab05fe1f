"""What the service asks of whatever executes its runs: the in-process pool, or Ray."""

from __future__ import annotations

from typing import Protocol

__all__ = ["Executor"]


class Executor(Protocol):
    """Takes queued runs from the store and executes them, until told to stop."""

    @property
    def busy(self) -> int:
        """How many runs this process has executing now."""

    async def start(self) -> None:
        """Begin taking queued runs, and recovering those whose owner stopped."""

    def wake(self) -> None:
        """A run was queued: look now rather than at the next poll."""

    def cancel(self, run_id: str, rollback: bool) -> bool:
        """Pass a cancel on to a run executing here at once; False if none is.

        The cancel is in the store already: an executor that returns False finds it there.
        """

    async def drain(self, within: float) -> None:
        """Wait until no run is queued or executing (for tests and benchmarks)."""

    def begin_stop(self) -> None:
        """Take no more runs."""

    async def stop(self, grace: float) -> None:
        """Stop within about ``grace`` seconds, leaving every unfinished run recoverable."""
