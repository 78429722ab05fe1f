"""In-process fan-out of stored events to live subscribers (SSE streams, tests).

The event log in the store is the source of truth; the bus only says "this was just
committed". A subscriber registers before it replays the log, then drops what it already
sent, so nothing falls between replay and live. On PostgreSQL, ``app.runs.log_bus``
extends it to the events of every replica.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from app.store.records import EventRow

__all__ = ["EventBus", "Subscription"]


class Subscription:
    """A queue of events for one run (``run_id``) or for all runs (``None``)."""

    def __init__(self, run_id: str | None) -> None:
        self.run_id = run_id
        self.queue: asyncio.Queue[EventRow | None] = asyncio.Queue()

    async def get(self) -> EventRow | None:
        """The next event; None once the bus is closed (the server is stopping)."""
        return await self.queue.get()

    async def get_ready(self) -> list[EventRow | None]:
        """The next event and every one delivered with it, in order (waits for the first).

        One commit delivers several events at once (a step's end and the next one's start):
        a stream that takes them together sends them in one write."""
        first = await self.queue.get()
        if self.queue.empty():
            return [first]
        ready = [first]
        while not self.queue.empty():
            ready.append(self.queue.get_nowait())
        return ready


class EventBus:
    """Publishes each committed event to the subscribers of its run and of all runs."""

    def __init__(self) -> None:
        self._by_run: dict[str, set[Subscription]] = {}
        self._everything: set[Subscription] = set()
        self.closed = False

    @property
    def subscriber_count(self) -> int:
        return len(self._everything) + sum(len(s) for s in self._by_run.values())

    async def start(self) -> None:
        """Begin delivering; the in-process bus has nothing to start."""

    async def stop(self) -> None:
        """Release what delivery holds, once the bus is closed; here that is nothing."""

    def publish(self, event: EventRow) -> None:
        """``event`` was just committed by a writer in this process."""
        self.deliver(event)

    def deliver(self, event: EventRow) -> None:
        """Hand ``event`` to the subscribers of its run and of all runs."""
        for subscription in self._by_run.get(event.run_id, ()):
            subscription.queue.put_nowait(event)
        for subscription in self._everything:
            subscription.queue.put_nowait(event)

    def close(self) -> None:
        """Tell every subscriber, now and later, that no more events will come."""
        self.closed = True
        for subscribers in (*self._by_run.values(), self._everything):
            for subscription in subscribers:
                subscription.queue.put_nowait(None)

    @asynccontextmanager
    async def subscribe(self, run_id: str | None = None) -> AsyncIterator[Subscription]:
        subscription = Subscription(run_id)
        if self.closed:
            subscription.queue.put_nowait(None)
        if run_id is None:
            self._everything.add(subscription)
        else:
            self._by_run.setdefault(run_id, set()).add(subscription)
        try:
            yield subscription
        finally:
            if run_id is None:
                self._everything.discard(subscription)
            else:
                subscribers = self._by_run.get(run_id)
                if subscribers is not None:
                    subscribers.discard(subscription)
                    if not subscribers:
                        del self._by_run[run_id]
