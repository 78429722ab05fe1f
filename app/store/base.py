"""The store interface: everything the service persists goes through it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Protocol

from app.store.records import ApiKeyRow, Change, EventRow, NewApiKey, NewRun, RunFilter, RunRow

__all__ = ["Store"]


class Store(Protocol):
    """Runs, steps and their event log; every write is one transaction.

    ``apply`` is the only way a run changes after creation: a guarded status write plus its
    event, so that the log and the state can never disagree.
    """

    async def start(self) -> None:
        """Connect and bring the schema to the latest migration."""

    async def close(self) -> None:
        """Release connections."""

    async def create_run(self, run: NewRun) -> tuple[RunRow, EventRow | None]:
        """Store a queued run, its steps and its ``run.queued`` event.

        With an idempotency key already used for the same request, return the original run
        and None; for another request, raise ``IdempotencyConflict``. Otherwise raise
        ``QueueFull`` if the run's key or pipeline has its most queued runs already.
        """

    async def apply(self, run_id: str, change: Change, epoch: int | None = None) -> EventRow:
        """Write ``change`` and its event; ``InvalidTransition`` if the guard fails.

        With ``epoch`` (the fencing epoch the writer got when it claimed the run), nothing is
        written unless the run is still at that epoch: ``LeaseLost`` tells a stale owner.
        """

    async def apply_all(
        self, run_id: str, changes: Sequence[Change], epoch: int | None = None
    ) -> list[EventRow]:
        """``apply`` each change in order, all in one transaction: all are written or none."""

    async def claim_queued(
        self,
        limit: int,
        owner: str,
        lease_seconds: float,
        limits: Mapping[str, int] | None = None,
    ) -> list[tuple[RunRow, EventRow]]:
        """Move up to ``limit`` queued runs, oldest first, to running, owned by ``owner``
        for ``lease_seconds`` under a new epoch.

        ``limits`` caps, per pipeline, the runs started and not yet finished, whoever
        executes them: a pipeline at its cap is passed over, its runs stay queued (and keep
        their place) until one of its runs ends."""

    async def claim_orphans(
        self, limit: int, owner: str, lease_seconds: float, now: datetime | None = None
    ) -> list[RunRow]:
        """Take over unfinished runs whose lease ran out, each under a new epoch."""

    async def renew_leases(
        self,
        owner: str,
        epochs: Mapping[str, int],
        lease_seconds: float,
        *,
        while_last_seq: Mapping[str, int] | None = None,
    ) -> set[str]:
        """Extend ``owner``'s leases; return the runs it no longer holds. With
        ``while_last_seq``, a run is renewed only while its latest event is still the one
        given (nothing was written since): the others are returned too."""

    async def release(self, run_id: str, epoch: int) -> bool:
        """Give up a run unfinished, for recovery to take at once."""

    async def get_run(self, run_id: str) -> RunRow:
        """The run with its steps; ``RunNotFound`` if there is none."""

    async def cancel_request(self, run_id: str) -> bool | None:
        """Whether a cancel of the run was asked for: None if not, else whether the cancel
        rolls back; ``RunNotFound`` if there is no such run."""

    async def list_runs(self, filters: RunFilter, before: str | None, limit: int) -> list[RunRow]:
        """Runs matching ``filters``, newest first, older than the run id ``before``."""

    async def run_events(self, run_id: str, after_seq: int, limit: int) -> list[EventRow]:
        """A run's events with ``seq > after_seq``, in order."""

    async def all_events(
        self,
        after_id: int,
        limit: int,
        pipelines: Sequence[str] = (),
        types: Sequence[str] = (),
        owner_key_id: str | None = None,
    ) -> list[EventRow]:
        """Every run's events with ``id > after_id``, in order, optionally filtered (by
        pipeline, type, and the API key that created the run)."""

    async def last_event_id(self) -> int:
        """The id of the newest event of any run (0 when there is none)."""

    async def run_logs(
        self, run_id: str, step: str | None, after_seq: int, limit: int
    ) -> list[EventRow]:
        """A run's ``step.log`` events, optionally of one step."""

    async def count_runs(self) -> dict[tuple[str, str], int]:
        """``{(pipeline, status): count}`` over all runs."""

    async def create_api_key(self, key: NewApiKey) -> ApiKeyRow:
        """Store a new key; ``KeyNameTaken`` if its name (or id) is in use, revoked or not."""

    async def get_api_key(self, key_id: str) -> ApiKeyRow | None:
        """The key with this id, revoked or not; None if there is none."""

    async def list_api_keys(self) -> list[ApiKeyRow]:
        """Every key, revoked ones included, oldest first."""

    async def revoke_api_key(self, id_or_name: str) -> ApiKeyRow | None:
        """Revoke the key with this id (or else this name) and return it; a key revoked
        before keeps its revocation time. None if there is no such key."""

    async def has_api_keys(self) -> bool:
        """Whether any key was ever created: revoked keys count, so that revoking the
        last key does not turn authentication off."""

    async def server_secret(self, name: str, candidate: str) -> str:
        """The secret stored under ``name``; ``candidate`` is stored first if there is none
        (of two replicas that start at once, both get the first one stored)."""

    async def use_stream_token(self, token_id: str, expires_at: datetime) -> bool:
        """Record a stream token as used: True the first time, False ever after (until
        ``expires_at`` has passed, when it may be forgotten)."""

    async def check_ready(self) -> str | None:
        """None if the database answers and its schema is current, else what is wrong."""
