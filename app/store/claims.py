"""Which queued runs a claim takes, under per-pipeline caps: one rule for every store.

The rule asks its questions as SQL and is handed the rows (a generator, free of any
driver), so the SQLite store runs it on its writer's connection and the PostgreSQL store on
an asyncpg one, each inside the transaction that then claims the runs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator, Mapping, Sequence
from typing import Any

from app.states import RunStatus

__all__ = ["Query", "claimable", "run_async", "run_sync"]

ACTIVE = (RunStatus.running.value, RunStatus.rolling_back.value, RunStatus.cancelling.value)

Query = tuple[str, list[Any]]
Rows = Sequence[Sequence[Any]]
Plan = Generator[Query, Rows, list[str]]


def claimable(limit: int, limits: Mapping[str, int], numbered: bool, lock: str = "") -> Plan:
    """Up to ``limit`` queued run ids, oldest first, passing over the runs of pipelines
    that have as many runs started and unfinished as ``limits`` allows them.
    ``numbered``: placeholders are ``$1, $2…`` (asyncpg) rather than ``?`` (sqlite3);
    ``lock`` ends the query of queued runs (``FOR UPDATE SKIP LOCKED``, say)."""

    def marks(params: list[Any], values: Sequence[Any]) -> str:
        start = len(params)
        params.extend(values)
        if not numbered:
            return ", ".join("?" * len(values))
        return ", ".join(f"${i}" for i in range(start + 1, start + len(values) + 1))

    room: dict[str, int] = {}
    if limits:
        params: list[Any] = []
        sql = (
            f"SELECT pipeline, count(*) FROM runs WHERE status IN ({marks(params, ACTIVE)}) "
            f"AND pipeline IN ({marks(params, list(limits))}) GROUP BY pipeline"
        )
        active = {str(name): int(count) for name, count in (yield sql, params)}
        room = {name: cap - active.get(name, 0) for name, cap in limits.items()}
    ids: list[str] = []
    while len(ids) < limit:
        params = []
        sql = f"SELECT id, pipeline FROM runs WHERE status = {marks(params, ['queued'])}"
        full = [name for name, left in room.items() if left <= 0]
        if full:
            sql += f" AND pipeline NOT IN ({marks(params, full)})"
        if ids:
            sql += f" AND id > {marks(params, [ids[-1]])}"
        sql += f" ORDER BY id LIMIT {marks(params, [limit - len(ids)])}{lock}"
        rows = yield sql, params
        if not rows:
            break
        for run_id, pipeline in rows:
            if pipeline in room:
                if room[pipeline] <= 0:
                    continue  # filled up within this page: the next query leaves it out
                room[pipeline] -= 1
            ids.append(str(run_id))
    return ids


def run_sync(plan: Plan, query: Callable[[str, list[Any]], Rows]) -> list[str]:
    try:
        sql, params = next(plan)
        while True:
            sql, params = plan.send(query(sql, params))
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


async def run_async(plan: Plan, query: Callable[[str, list[Any]], Awaitable[Rows]]) -> list[str]:
    try:
        sql, params = next(plan)
        while True:
            sql, params = plan.send(await query(sql, params))
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
