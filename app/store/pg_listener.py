"""A dedicated PostgreSQL connection that ``LISTEN``s for committed events.

The store announces each event on ``EVENTS_CHANNEL`` as it commits (ids only). This
connection hears those announcements and passes each event id on; it never reads events
itself (``app.runs.log_bus`` does, from the log). When the connection drops it reconnects,
with exponential backoff and jitter, and then says "anything may have been missed" (None):
announcements sent while nobody listened are gone, so the reader of the log must look again
from where it stopped.

A connection can die silently (a network cut sends nothing), so an idle one is probed now
and then; a probe that fails counts as a drop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from typing import Any, TypeAlias

import asyncpg

from app.backoff import backoff_seconds
from app.store.postgres import EVENTS_CHANNEL, application_name

__all__ = ["APPLICATION_NAME", "EventListener"]

log = logging.getLogger("stepline.listener")

# How the connection shows in pg_stat_activity, followed by "<pid>@<host>" so that an
# operator can tell which process holds it.
APPLICATION_NAME = "stepline-events"
CONNECT_TIMEOUT = 10.0
PROBE_SECONDS = 10.0  # how long an idle connection goes unchecked
PROBE_TIMEOUT = 5.0
BACKOFF_FIRST = 0.1  # seconds before the first attempt to reconnect

Connection: TypeAlias = "asyncpg.Connection[asyncpg.Record]"
# What the listener reports: a committed event's id, or None for "maybe several, unknown".
OnCommit = Callable[[int | None], None]


def _ignore(_event_id: int | None) -> None:
    pass


def _event_id(payload: object) -> int | None:
    try:
        announced = json.loads(str(payload))
        return int(announced["id"])
    except (ValueError, TypeError, KeyError):
        return None  # not ours to parse: a read of the log sorts it out


class EventListener:
    """Calls ``on_commit`` with the id of every event announced while it listens, and with
    None each time it (re)starts listening (a ``CommitFeed`` of ``app.runs.log_bus``)."""

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._on_commit: OnCommit = _ignore
        self._connection: Connection | None = None
        self._lost = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def connected(self) -> bool:
        return self._connection is not None and not self._connection.is_closed()

    async def start(self, on_commit: OnCommit) -> None:
        """Listen, or raise if the database cannot be reached now; reconnect from then on."""
        self._on_commit = on_commit
        await self._connect()
        self._task = asyncio.create_task(self._keep_listening(), name="stepline-listener")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await self._disconnect()

    async def _connect(self) -> None:
        connection: Connection = await asyncpg.connect(
            self._dsn,
            timeout=CONNECT_TIMEOUT,
            server_settings={"application_name": application_name(APPLICATION_NAME)},
        )
        lost = asyncio.Event()
        connection.add_termination_listener(lambda _connection: lost.set())
        try:
            await connection.add_listener(EVENTS_CHANNEL, self._notified)
        except BaseException:
            connection.terminate()
            raise
        self._connection, self._lost = connection, lost
        # Listening from now on; what committed before is only in the log.
        self._on_commit(None)

    async def _disconnect(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None and not connection.is_closed():
            try:
                await asyncio.wait_for(connection.close(), PROBE_TIMEOUT)
            except Exception:
                connection.terminate()  # a close that cannot finish must not hold up a stop

    def _notified(self, _connection: Any, _pid: int, _channel: str, payload: object) -> None:
        self._on_commit(_event_id(payload))

    async def _keep_listening(self) -> None:
        while True:
            await self._until_lost()
            log.warning("the events listener lost its database connection; reconnecting")
            await self._disconnect()
            failures = 0
            while True:
                await asyncio.sleep(backoff_seconds(failures, first=BACKOFF_FIRST))
                try:
                    await self._connect()
                except Exception as exc:  # whatever it is, this loop must go on
                    failures += 1
                    log.warning("the events listener cannot reconnect (attempt %d): %r",
                                failures, exc)  # fmt: skip
                    continue
                log.info("the events listener is listening again")
                break

    async def _until_lost(self) -> None:
        """Return once the connection is gone, whether it said so or not."""
        connection = self._connection
        while connection is not None and not connection.is_closed():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._lost.wait(), PROBE_SECONDS)
                return
            try:
                await connection.fetchval("SELECT 1", timeout=PROBE_TIMEOUT)
            except Exception:  # no answer in time, or none at all: a new connection is due
                return
