"""A bus that delivers from the event log, so that its subscribers see every writer's events.

On PostgreSQL several API replicas (and remote workers) write one event log. Each commit is
announced (``NOTIFY``, ids only) and a ``CommitFeed`` (``app.store.pg_listener``) passes the
announcements on; this bus then reads the log after the last event it delivered and hands
what it finds to its subscribers. So:

- Events are delivered in global id order, each exactly once, without a gap: the bus keeps
  the id of the last event it delivered and only ever reads the log after it, through
  ``Store.all_events``, which waits out writers still holding an id (see
  ``app.store.postgres``), so an event that commits after a later-numbered one is not
  skipped.
- Announcements are hints, never data. One that comes late, out of order, or not at all
  (while the feed reconnects) only changes when events arrive: the next read covers them,
  and the feed asks for one each time it (re)connects.
- Events written by this process take the same path. ``publish`` only says "read now"
  (sparing the wait for the announcement) and never delivers: with one path, nothing is
  delivered twice, and local and remote events reach subscribers in the log's order. It
  also keeps local events flowing while the feed is cut off.
- Reads coalesce: however many announcements come during a read, one more read follows it
  and takes everything up to then.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Protocol

from app.backoff import backoff_seconds
from app.runs.bus import EventBus
from app.store.base import Store
from app.store.records import EventRow

__all__ = ["CommitFeed", "LogEventBus", "OnCommit"]

log = logging.getLogger("stepline.bus")

READ_BATCH = 500

# A committed event's id, or None for "events may have committed, which is unknown".
OnCommit = Callable[[int | None], None]


class CommitFeed(Protocol):
    """Tells of the events other writers commit, for as long as it runs."""

    @property
    def connected(self) -> bool:
        """Whether commits are heard now (if not, it is reconnecting)."""

    async def start(self, on_commit: OnCommit) -> None:
        """Call ``on_commit`` from now on, and with None whenever commits may have gone
        unheard (each time it connects)."""

    async def stop(self) -> None:
        """Stop calling ``on_commit``; release the connection."""


class LogEventBus(EventBus):
    """An ``EventBus`` whose subscribers see the events of every writer, read from the log
    whenever ``feed`` or this process tells of a commit."""

    def __init__(self, store: Store, feed: CommitFeed) -> None:
        super().__init__()
        self.store, self.feed = store, feed
        self.delivered_id = 0  # every event up to this id has been delivered
        self._due = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        # Hear commits first: every event that commits after the position taken next is told.
        await self.feed.start(self._committed)
        self.delivered_id = await self.store.last_event_id()
        self._reader = asyncio.create_task(self._read(), name="stepline-bus-reader")

    async def stop(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
        await self.feed.stop()

    def publish(self, event: EventRow) -> None:
        self._committed(event.id)

    def close(self) -> None:
        super().close()
        self._due.set()  # so that the reader sees the bus closed and ends

    def _committed(self, event_id: int | None) -> None:
        if event_id is None or event_id > self.delivered_id:
            self._due.set()

    async def _read(self) -> None:
        failures = 0
        while not self.closed:
            await self._due.wait()
            self._due.clear()
            try:
                await self._catch_up()
            except Exception as exc:
                # The database is out of reach for now: subscribers get the events late,
                # never out of order, once a read succeeds again.
                failures += 1
                log.warning("cannot read new events (attempt %d): %r", failures, exc)
                self._due.set()
                await asyncio.sleep(backoff_seconds(failures))
            else:
                failures = 0

    async def _catch_up(self) -> None:
        while True:
            batch = await self.store.all_events(self.delivered_id, READ_BATCH)
            for event in batch:
                if self.closed:  # no subscriber listens any more
                    return
                self.deliver(event)
                self.delivered_id = event.id
            if len(batch) < READ_BATCH:
                return
