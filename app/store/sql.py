"""The SQLAlchemy store: SQLite for the embedded default, any async SQLAlchemy URL else."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Row, RowMapping, and_, func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from app.errors import IdempotencyConflict, InvalidTransition, RunNotFound
from app.ids import new_run_id
from app.states import RollbackStatus, RunStatus, StepStatus, can_transition
from app.store.engine import Engines, create_engines
from app.store.migrate import current_revision, head_revision, upgrade
from app.store.records import Change, EventRow, NewRun, RunFilter, RunRow, StepRow
from app.store.schema import events, idempotency_keys, runs, step_runs

__all__ = ["SqlStore"]

_STEP_COLUMNS = [c for c in step_runs.c if c.name != "run_id"]


def _now() -> datetime:
    return datetime.now(UTC)


class SqlStore:
    """Runs, steps and events in one SQL database (see ``app.store.base.Store``)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engines: Engines = create_engines(url)

    async def start(self) -> None:
        await upgrade(self.engines.writer)

    async def close(self) -> None:
        await self.engines.dispose()

    # -- writes --------------------------------------------------------------------------

    async def create_run(self, run: NewRun) -> tuple[RunRow, EventRow | None]:
        async with self.engines.writer.begin() as conn:
            if run.idempotency_key is not None:
                found = (
                    await conn.execute(
                        select(idempotency_keys.c.run_id, idempotency_keys.c.request_hash).where(
                            idempotency_keys.c.key == run.idempotency_key
                        )
                    )
                ).first()
                if found is not None:
                    if found.request_hash != run.request_hash:
                        raise IdempotencyConflict(
                            "this Idempotency-Key was used with a different request body",
                            run_id=found.run_id,
                        )
                    return await self._read_run(conn, found.run_id), None
            now, run_id = _now(), new_run_id()
            await conn.execute(
                insert(runs).values(
                    id=run_id, pipeline=run.pipeline, status=RunStatus.queued.value,
                    params=run.params, labels=run.labels, progress=0.0, created_at=now,
                    updated_at=now, last_seq=1, cancel_requested=False, rollback_on_cancel=True,
                )
            )  # fmt: skip
            if run.steps:
                await conn.execute(
                    insert(step_runs),
                    [
                        {
                            "run_id": run_id, "index": i, "name": s.name, "weight": s.weight,
                            "can_rollback": s.can_rollback, "status": StepStatus.pending.value,
                            "progress": 0.0, "attempts": 0,
                            "rollback_status": RollbackStatus.not_needed.value,
                        }
                        for i, s in enumerate(run.steps)
                    ],
                )  # fmt: skip
            data = {"status": RunStatus.queued.value, "progress": 0.0}
            event = await self._insert_event(conn, run_id, 1, "run.queued", run.pipeline, now, data)
            if run.idempotency_key is not None:
                await conn.execute(
                    insert(idempotency_keys).values(
                        key=run.idempotency_key, request_hash=run.request_hash, run_id=run_id,
                        created_at=now,
                    )
                )  # fmt: skip
            return await self._read_run(conn, run_id), event

    async def apply(self, run_id: str, change: Change) -> EventRow:
        async with self.engines.writer.begin() as conn:
            return await self._apply(conn, run_id, change)

    async def claim_queued(self, limit: int) -> list[tuple[RunRow, EventRow]]:
        claimed: list[tuple[RunRow, EventRow]] = []
        async with self.engines.writer.begin() as conn:
            ids = (
                (
                    await conn.execute(
                        select(runs.c.id)
                        .where(runs.c.status == RunStatus.queued.value)
                        .order_by(runs.c.id)
                        .limit(limit)
                    )
                )
                .scalars()
                .all()
            )
            for run_id in ids:
                change = Change(
                    "run.started",
                    expect=frozenset({RunStatus.queued}),
                    run={"status": RunStatus.running, "started_at": _now()},
                )
                event = await self._apply(conn, run_id, change)
                claimed.append((await self._read_run(conn, run_id), event))
        return claimed

    async def _apply(self, conn: AsyncConnection, run_id: str, change: Change) -> EventRow:
        current = (
            await conn.execute(
                select(runs.c.status, runs.c.last_seq, runs.c.progress, runs.c.pipeline).where(
                    runs.c.id == run_id
                )
            )
        ).first()
        if current is None:
            raise RunNotFound(f"no run with id {run_id!r}")
        status = RunStatus(current.status)
        if change.expect is not None and status not in change.expect:
            raise InvalidTransition(
                f"run {run_id} is {status.value}; {change.event} needs "
                + " or ".join(sorted(s.value for s in change.expect)),
                run_status=status.value,
            )
        values = dict(change.run)
        if status in change.moves:
            values["status"] = change.moves[status]
        new_status = values.get("status")
        if new_status is not None:
            new_status = RunStatus(new_status)
            if new_status != status and not can_transition(status, new_status):
                raise InvalidTransition(
                    f"run {run_id} cannot go from {status.value} to {new_status.value}",
                    run_status=status.value,
                )
            values["status"] = new_status.value
        now, seq = _now(), current.last_seq + 1
        await conn.execute(
            update(runs).where(runs.c.id == run_id).values(**values, last_seq=seq, updated_at=now)
        )
        for index, step_values in change.steps.items():
            await conn.execute(
                update(step_runs)
                .where(and_(step_runs.c.run_id == run_id, step_runs.c.index == index))
                .values(**_enum_values(step_values))
            )
        data = {
            "status": (new_status or status).value,
            "progress": values.get("progress", current.progress),
            **change.data,
        }
        return await self._insert_event(
            conn, run_id, seq, change.event, current.pipeline, now, data
        )

    async def _insert_event(
        self,
        conn: AsyncConnection,
        run_id: str,
        seq: int,
        type_: str,
        pipeline: str,
        now: datetime,
        data: dict[str, Any],
    ) -> EventRow:
        result = await conn.execute(
            insert(events)
            .values(run_id=run_id, seq=seq, type=type_, pipeline=pipeline, created_at=now,
                    data=data)
            .returning(events.c.id)
        )  # fmt: skip
        return EventRow(result.scalar_one(), run_id, seq, type_, pipeline, now, data)

    # -- reads ---------------------------------------------------------------------------

    async def get_run(self, run_id: str) -> RunRow:
        async with self.engines.reader.connect() as conn:
            return await self._read_run(conn, run_id)

    async def _read_run(self, conn: AsyncConnection, run_id: str) -> RunRow:
        row = (await conn.execute(select(runs).where(runs.c.id == run_id))).mappings().first()
        if row is None:
            raise RunNotFound(f"no run with id {run_id!r}")
        step_rows = (
            (
                await conn.execute(
                    select(*_STEP_COLUMNS)
                    .where(step_runs.c.run_id == run_id)
                    .order_by(step_runs.c.index)
                )
            )
            .mappings()
            .all()
        )
        return _run_row(row, tuple(StepRow(**s) for s in step_rows))

    async def list_runs(self, filters: RunFilter, before: str | None, limit: int) -> list[RunRow]:
        query = select(runs).order_by(runs.c.id.desc()).limit(limit)
        if before is not None:
            query = query.where(runs.c.id < before)
        if filters.pipeline is not None:
            query = query.where(runs.c.pipeline == filters.pipeline)
        if filters.status is not None:
            query = query.where(runs.c.status == filters.status.value)
        if filters.created_after is not None:
            query = query.where(runs.c.created_at >= filters.created_after)
        if filters.created_before is not None:
            query = query.where(runs.c.created_at < filters.created_before)
        for key, value in filters.labels.items():
            query = query.where(runs.c.labels[key].as_string() == value)
        async with self.engines.reader.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
            if not rows:
                return []
            ids = [r["id"] for r in rows]
            step_rows = (
                (
                    await conn.execute(
                        select(step_runs)
                        .where(step_runs.c.run_id.in_(ids))
                        .order_by(step_runs.c.run_id, step_runs.c.index)
                    )
                )
                .mappings()
                .all()
            )
        by_run: dict[str, list[StepRow]] = {}
        for s in step_rows:
            by_run.setdefault(s["run_id"], []).append(
                StepRow(**{k: v for k, v in s.items() if k != "run_id"})
            )
        return [_run_row(r, tuple(by_run.get(r["id"], ()))) for r in rows]

    async def run_events(self, run_id: str, after_seq: int, limit: int) -> list[EventRow]:
        query = (
            select(events)
            .where(and_(events.c.run_id == run_id, events.c.seq > after_seq))
            .order_by(events.c.seq)
            .limit(limit)
        )
        return await self._events(query)

    async def all_events(
        self,
        after_id: int,
        limit: int,
        pipelines: Sequence[str] = (),
        types: Sequence[str] = (),
    ) -> list[EventRow]:
        query = select(events).where(events.c.id > after_id).order_by(events.c.id).limit(limit)
        if pipelines:
            query = query.where(events.c.pipeline.in_(pipelines))
        if types:
            query = query.where(events.c.type.in_(types))
        return await self._events(query)

    async def last_event_id(self) -> int:
        async with self.engines.reader.connect() as conn:
            return int((await conn.execute(select(func.max(events.c.id)))).scalar() or 0)

    async def run_logs(
        self, run_id: str, step: str | None, after_seq: int, limit: int
    ) -> list[EventRow]:
        query = (
            select(events)
            .where(
                and_(events.c.run_id == run_id, events.c.type == "step.log",
                     events.c.seq > after_seq)
            )
            .order_by(events.c.seq)
            .limit(limit)
        )  # fmt: skip
        if step is not None:
            query = query.where(events.c.data["step"].as_string() == step)
        return await self._events(query)

    async def _events(self, query: Any) -> list[EventRow]:
        async with self.engines.reader.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [_event_row(r) for r in rows]

    async def count_runs(self) -> dict[tuple[str, str], int]:
        query = select(runs.c.pipeline, runs.c.status, func.count()).group_by(
            runs.c.pipeline, runs.c.status
        )
        async with self.engines.reader.connect() as conn:
            return {(p, s): n for p, s, n in (await conn.execute(query)).all()}

    async def check_ready(self) -> str | None:
        try:
            async with self.engines.reader.connect() as conn:
                await conn.execute(text("SELECT 1"))
            current = await current_revision(self.engines.reader)
        except Exception as exc:
            return f"database unreachable: {type(exc).__name__}: {exc}"
        head = head_revision()
        if current != head:
            return f"database schema is at {current}, this version needs {head}"
        return None


def _enum_values(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (v.value if hasattr(v, "value") else v) for k, v in values.items()}


def _run_row(row: RowMapping, steps: tuple[StepRow, ...]) -> RunRow:
    data = dict(row)
    data["status"] = RunStatus(data["status"])
    return RunRow(**data, steps=steps)


def _event_row(row: Row[Any]) -> EventRow:
    return EventRow(row.id, row.run_id, row.seq, row.type, row.pipeline, row.created_at, row.data)
