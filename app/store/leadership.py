"""One leader among the replicas that share a PostgreSQL database: an advisory lock.

The leader holds a session-level advisory lock (``pg_try_advisory_lock``) on a connection of
its own, for as long as that connection lives: a replica that stops, crashes or loses its
connection loses the lock with it, and the next replica to try takes it. Nobody waits for
the lock; a replica that does not hold it simply does not lead this time round.

A replica that is frozen rather than dead (SIGSTOP, a stalled VM) keeps its connection open,
so the connection carries PostgreSQL's ``idle_session_timeout``: a leader that has not
checked its lead for that long loses its session, and the lock with it (PostgreSQL 14 and
newer; an older server refuses the setting, and the lock then lasts as long as the
connection).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import asyncpg

from app.store.postgres import MIGRATION_LOCK, postgres_dsn

__all__ = ["RECONCILER_LOCK", "Leadership"]

log = logging.getLogger("stepline.leadership")

RECONCILER_LOCK = MIGRATION_LOCK + 1  # the last of the store's own keys, plus one
CONNECT_TIMEOUT = 10.0
CHECK_TIMEOUT = 5.0


class Leadership:
    """``lead()`` is True while this process holds the lock ``key`` on ``url``'s database."""

    def __init__(
        self, url: str, key: int = RECONCILER_LOCK, idle_timeout: float | None = None
    ) -> None:
        """``idle_timeout``: seconds after which the database ends the session of a leader
        that has stopped checking its lead (None: never). Check more often than that."""
        dsn = postgres_dsn(url)
        if dsn is None:
            raise ValueError(f"{url!r} is not a postgresql+asyncpg URL")
        self._dsn, self.key = dsn, key
        self._idle_timeout = idle_timeout
        self._connection: asyncpg.Connection[asyncpg.Record] | None = None
        self.leading = False

    async def lead(self) -> bool:
        """Take the lock if it is free, or check that it is still held; True if held."""
        try:
            if self._connection is None or self._connection.is_closed():
                self.leading = False
                self._connection = await self._connect()
            if self.leading:
                # The lock lives as long as the session: a connection that answers holds it.
                await self._connection.fetchval("SELECT 1", timeout=CHECK_TIMEOUT)
            else:
                self.leading = bool(
                    await self._connection.fetchval(
                        "SELECT pg_try_advisory_lock($1)", self.key, timeout=CHECK_TIMEOUT
                    )
                )
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
            log.warning("lost the connection that holds (or would take) the lead", exc_info=True)
            await self._drop()
        return self.leading

    async def _connect(self) -> asyncpg.Connection[asyncpg.Record]:
        connection = await asyncpg.connect(self._dsn, timeout=CONNECT_TIMEOUT)
        if self._idle_timeout is not None:
            # SET after connecting, not a startup parameter: a pooler in front may refuse
            # unknown startup parameters, and then nobody would ever lead.
            try:
                await connection.execute(
                    f"SET idle_session_timeout = {self._idle_timeout * 1000:.0f}",
                    timeout=CHECK_TIMEOUT,
                )
            except asyncpg.PostgresError as exc:  # before PostgreSQL 14, say
                log.warning("no idle_session_timeout (%s): a frozen leader keeps the lead", exc)
        return connection

    async def close(self) -> None:
        """Step down: the lock goes with the connection."""
        await self._drop()

    async def _drop(self) -> None:
        connection, self._connection, self.leading = self._connection, None, False
        if connection is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.close(), CHECK_TIMEOUT)
            if not connection.is_closed():
                connection.terminate()
