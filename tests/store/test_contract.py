"""The ``Store`` contract, held by every backend: each test runs on SQLite and PostgreSQL.

What the service relies on: guarded transitions, fencing epochs, idempotency keys, gapless
per-run sequences and a global event id that grows in commit order (even under concurrent
writers), claims and leases, filters and cursors, and the value types of what is read back.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic_core import to_json

from app.errors import (
    IdempotencyConflict,
    InvalidTransition,
    KeyNameTaken,
    LeaseLost,
    QueueFull,
    RunNotFound,
)
from app.states import RunStatus
from app.store.base import Store
from app.store.migrate import head_revision
from app.store.records import (
    Change,
    EventRow,
    NewApiKey,
    NewRun,
    NewStep,
    RunFilter,
    RunRow,
    StepRow,
)
from tests.databases import execute

pytestmark = pytest.mark.anyio

STEPS = (NewStep("a", 0.2, True), NewStep("b", 0.5, False), NewStep("c", 0.3, True))
LEASE = 30.0
RUNNING = frozenset({RunStatus.running})


def new_run(
    pipeline: str = "p",
    *,
    params: dict[str, Any] | None = None,
    labels: dict[str, str] | None = None,
    key: str | None = None,
    request_hash: str | None = None,
) -> NewRun:
    request_hash = (request_hash or "h") if key else None
    return NewRun(pipeline, params or {"n": 1}, labels or {}, STEPS, key, request_hash)


async def create(store: Store, pipeline: str = "p", **kwargs: Any) -> RunRow:
    run, event = await store.create_run(new_run(pipeline, **kwargs))
    assert event is not None
    return run


async def running(store: Store, owner: str = "owner-1") -> RunRow:
    """A run claimed by ``owner`` (epoch 1); the store must hold no other queued run."""
    await create(store)
    [(run, _event)] = await store.claim_queued(1, owner, LEASE)
    return run


def progress(seq: int) -> Change:
    return Change("step.progress", {"index": 1, "step_progress": seq}, expect=RUNNING)


def assert_utc(value: datetime | None, optional: bool = True) -> None:
    if value is None:
        assert optional
        return
    assert type(value) is datetime
    assert value.tzinfo is UTC


def assert_types(run: RunRow) -> None:
    """Every field of a stored run has the type ``RunRow`` documents, on every backend."""
    assert type(run.status) is RunStatus
    for text in (run.id, run.pipeline):
        assert type(text) is str
    for document in (run.params, run.labels):
        assert type(document) is dict
    for maybe_document in (run.error, run.result, run.checkpoint):
        assert maybe_document is None or type(maybe_document) is dict
    assert type(run.progress) is float
    assert run.rollback_progress is None or type(run.rollback_progress) is float
    assert run.summary is None or type(run.summary) is str
    assert run.owner is None or type(run.owner) is str
    for number in (run.last_seq, run.epoch, run.recovery_attempts):
        assert type(number) is int
    for flag in (run.cancel_requested, run.rollback_on_cancel):
        assert type(flag) is bool
    assert_utc(run.created_at, optional=False)
    assert_utc(run.updated_at, optional=False)
    for moment in (run.started_at, run.finished_at, run.lease_expires_at):
        assert_utc(moment)
    assert type(run.steps) is tuple
    for step in run.steps:
        assert_step_types(step)


def assert_step_types(step: StepRow) -> None:
    for text in (step.name, step.status, step.rollback_status):
        assert type(text) is str
    for number in (step.index, step.attempts):
        assert type(number) is int
    assert type(step.weight) is float
    assert type(step.progress) is float
    assert step.duration_seconds is None or type(step.duration_seconds) is float
    assert type(step.can_rollback) is bool
    for document in (step.error, step.rollback_error, step.result_data, step.rollback_data):
        assert document is None or type(document) is dict
    for moment in (
        step.started_at,
        step.finished_at,
        step.rollback_started_at,
        step.rollback_finished_at,
    ):
        assert_utc(moment)


def assert_event_types(event: EventRow) -> None:
    for number in (event.id, event.seq):
        assert type(number) is int
    for text in (event.run_id, event.type, event.pipeline):
        assert type(text) is str
    assert type(event.data) is dict
    assert_utc(event.created_at, optional=False)


# -- start, readiness, an empty store --------------------------------------------------------


async def test_start_migrates_to_head_and_the_store_is_ready(store: Store, url: str) -> None:
    assert execute(url, "SELECT version_num FROM alembic_version") == [(head_revision(),)]
    assert await store.check_ready() is None


async def test_an_empty_store_has_no_runs_and_no_events(store: Store) -> None:
    assert await store.last_event_id() == 0
    assert await store.count_runs() == {}
    assert await store.list_runs(RunFilter(), None, 10) == []
    assert await store.all_events(0, 10) == []
    with pytest.raises(RunNotFound):
        await store.get_run("01NOSUCHRUN000000000000000")


async def test_a_schema_behind_this_version_is_not_ready(store: Store, url: str) -> None:
    execute(url, "UPDATE alembic_version SET version_num = '0001'")

    problem = await store.check_ready()

    assert problem is not None
    assert "0001" in problem
    assert str(head_revision()) in problem


async def test_a_restarted_store_finds_its_runs(store: Store, url: str) -> None:
    from app.store import open_store

    run = await create(store)
    again = open_store(url)
    await again.start()  # the schema is current: nothing to migrate
    try:
        assert await again.get_run(run.id) == run
        assert await again.check_ready() is None
    finally:
        await again.close()


# -- create_run ------------------------------------------------------------------------------


async def test_a_created_run_is_queued_with_pending_steps_and_its_first_event(
    store: Store,
) -> None:
    before = datetime.now(UTC)
    run, event = await store.create_run(new_run(labels={"team": "a"}))

    assert event is not None
    assert (event.id, event.seq, event.type, event.pipeline) == (1, 1, "run.queued", "p")
    assert event.run_id == run.id
    assert event.data == {"status": "queued", "progress": 0.0}
    assert run.status is RunStatus.queued
    assert (run.progress, run.last_seq, run.epoch, run.owner) == (0.0, 1, 0, None)
    assert before <= run.created_at == run.updated_at == event.created_at
    assert (run.cancel_requested, run.rollback_on_cancel) == (False, True)
    assert [(s.index, s.name, s.weight, s.can_rollback, s.status, s.rollback_status)
            for s in run.steps] == [
        (0, "a", 0.2, True, "pending", "not_needed"),
        (1, "b", 0.5, False, "pending", "not_needed"),
        (2, "c", 0.3, True, "pending", "not_needed"),
    ]  # fmt: skip
    stored = await store.get_run(run.id)
    assert stored == run
    assert_types(stored)
    [replayed] = await store.run_events(run.id, 0, 10)
    assert replayed == event
    assert_event_types(replayed)


async def test_a_run_without_steps_can_be_stored(store: Store) -> None:
    run, _ = await store.create_run(NewRun("empty", {}, {}, ()))

    assert (await store.get_run(run.id)).steps == ()


async def test_json_documents_round_trip(store: Store) -> None:
    params = {
        "nested": {"list": [1, 2.5, None, True, "x"], "empty": {}},
        "int": 3,
        "float": 1.0,
        "unicode": "Grüße, 世界 \U0001f680",
        "when": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),  # not JSON: stored as text
    }
    labels = {"a.b": "dotted", 'quote"d': "x", "emoji \U0001f680": "y"}

    run = await create(store, params=params, labels=labels)
    stored = await store.get_run(run.id)

    assert stored.params == json.loads(to_json(params, fallback=str))
    assert type(stored.params["int"]) is int
    assert type(stored.params["float"]) is float
    assert stored.labels == labels


async def test_the_same_key_and_request_return_the_original_run_and_no_event(
    store: Store,
) -> None:
    first, event = await store.create_run(new_run(key="order-42", request_hash="h1"))
    again, none = await store.create_run(new_run(key="order-42", request_hash="h1"))

    assert event is not None
    assert none is None
    assert again == first
    assert await store.count_runs() == {("p", "queued"): 1}


async def test_the_same_key_with_another_request_is_a_conflict_that_writes_nothing(
    store: Store,
) -> None:
    first = await create(store, key="order-42", request_hash="h1")

    with pytest.raises(IdempotencyConflict) as raised:
        await store.create_run(new_run(key="order-42", request_hash="h2"))

    assert raised.value.extra == {"run_id": first.id}
    assert await store.count_runs() == {("p", "queued"): 1}
    assert await store.last_event_id() == 1


async def test_concurrent_creates_with_one_key_create_exactly_one_run(store: Store) -> None:
    results = await asyncio.gather(
        *(store.create_run(new_run(key="same", request_hash="h")) for _ in range(20))
    )

    assert len({run.id for run, _ in results}) == 1
    assert len([event for _, event in results if event is not None]) == 1
    assert await store.count_runs() == {("p", "queued"): 1}
    # The creates that lost the race left no trace in the log: the next event is number 2.
    await create(store)
    assert await store.last_event_id() == 2


async def test_concurrent_creates_with_their_own_keys_create_one_run_each(store: Store) -> None:
    results = await asyncio.gather(
        *(store.create_run(new_run(key=f"key-{i}", request_hash="h")) for i in range(20))
    )

    assert len({run.id for run, _ in results}) == 20
    assert sorted(e.id for _, e in results if e is not None) == list(range(1, 21))


# -- apply -----------------------------------------------------------------------------------


async def test_apply_writes_the_change_and_its_event_together(store: Store) -> None:
    run = await running(store)
    started = datetime(2026, 3, 4, 5, 6, 7, 891011, tzinfo=UTC)
    change = Change(
        "step.succeeded",
        {"index": 0, "step": "a"},
        expect=RUNNING,
        run={"progress": 0.2, "checkpoint": {"done": ["a"]}},
        steps={
            0: {"status": "succeeded", "progress": 1.0, "attempts": 2, "started_at": started,
                "finished_at": started + timedelta(seconds=1.5), "duration_seconds": 1.5,
                "result_data": {"rows": 3}},
            1: {"error": {"type": "ValueError", "message": "x"}},
        },
    )  # fmt: skip

    event = await store.apply(run.id, change, run.epoch)

    assert (event.seq, event.type, event.run_id) == (3, "step.succeeded", run.id)
    assert event.data == {"status": "running", "progress": 0.2, "index": 0, "step": "a"}
    stored = await store.get_run(run.id)
    assert_types(stored)
    assert (stored.last_seq, stored.progress, stored.updated_at) == (3, 0.2, event.created_at)
    assert stored.checkpoint == {"done": ["a"]}
    a, b, c = stored.steps
    assert (a.status, a.progress, a.attempts, a.duration_seconds) == ("succeeded", 1.0, 2, 1.5)
    assert (a.started_at, a.finished_at) == (started, started + timedelta(seconds=1.5))
    assert a.result_data == {"rows": 3}
    assert b.error == {"type": "ValueError", "message": "x"}
    assert c == run.steps[2]
    assert await store.run_events(run.id, 2, 10) == [event]


async def test_apply_all_writes_every_change_in_order_in_one_transaction(store: Store) -> None:
    run = await running(store)
    succeeded = Change("step.succeeded", {"index": 0}, run={"progress": 0.2},
                       steps={0: {"status": "succeeded", "progress": 1.0}})  # fmt: skip
    started = Change("step.started", {"index": 1}, steps={1: {"status": "running"}})

    events = await store.apply_all(run.id, [succeeded, started], run.epoch)

    assert [(e.seq, e.type) for e in events] == [(3, "step.succeeded"), (4, "step.started")]
    assert await store.run_events(run.id, 2, 10) == events
    stored = await store.get_run(run.id)
    assert [s.status for s in stored.steps] == ["succeeded", "running", "pending"]
    assert (stored.last_seq, stored.progress) == (4, 0.2)


async def test_apply_all_writes_nothing_when_one_change_fails(store: Store) -> None:
    run = await running(store)
    succeeded = Change("step.succeeded", {"index": 0}, steps={0: {"status": "succeeded"}})
    queued_only = Change("run.cancelled", expect=frozenset({RunStatus.queued}))

    with pytest.raises(InvalidTransition):
        await store.apply_all(run.id, [succeeded, queued_only], run.epoch)
    with pytest.raises(LeaseLost):
        await store.apply_all(run.id, [succeeded], run.epoch + 1)

    stored = await store.get_run(run.id)
    assert stored.last_seq == 2
    assert [s.status for s in stored.steps] == ["pending"] * 3
    assert [e.type for e in await store.run_events(run.id, 0, 10)] == ["run.queued", "run.started"]


async def test_claims_keep_each_capped_pipeline_within_its_cap(store: Store) -> None:
    p1, q1, p2, q2, p3 = [await create(store, name) for name in ("p", "q", "p", "q", "p")]

    first = await store.claim_queued(10, "o1", LEASE, {"p": 1})
    assert [run.id for run, _ in first] == [p1.id, q1.id, q2.id]  # oldest first, p2 waits
    assert await store.claim_queued(10, "o2", LEASE, {"p": 1}) == []  # another owner too

    done = Change("run.succeeded", run={"status": RunStatus.succeeded}, expect=RUNNING)
    await store.apply(p1.id, done, first[0][0].epoch)
    second = await store.claim_queued(10, "o2", LEASE, {"p": 1})
    assert [run.id for run, _ in second] == [p2.id]  # the next in line, not p3
    assert [run.id for run, _ in await store.claim_queued(10, "o3", LEASE)] == [p3.id]


async def test_concurrent_claimers_never_exceed_a_cap_together(store: Store) -> None:
    for _ in range(6):
        await create(store, "p")
    results = await asyncio.gather(
        *(store.claim_queued(3, f"owner-{i}", LEASE, {"p": 2}) for i in range(5))
    )
    assert sum(len(claimed) for claimed in results) == 2


async def test_a_cap_counts_runs_that_roll_back_or_cancel_and_leaves_room_to_others(
    store: Store,
) -> None:
    capped = [await create(store, "p") for _ in range(4)]
    free = await create(store, "q")
    claimed = await store.claim_queued(2, "o1", LEASE, {"p": 2, "q": 5})
    assert [run.id for run, _ in claimed] == [capped[0].id, capped[1].id]
    first, second = (run for run, _ in claimed)
    undo = Change("run.rollback_started", run={"status": RunStatus.rolling_back}, expect=RUNNING)
    stop = Change("run.cancelling", run={"status": RunStatus.cancelling}, expect=RUNNING)
    await store.apply(first.id, undo, first.epoch)
    await store.apply(second.id, stop, second.epoch)

    later = await store.claim_queued(10, "o2", LEASE, {"p": 2, "q": 5})

    assert [run.id for run, _ in later] == [free.id]
    assert [r.status for r in [await store.get_run(c.id) for c in capped[2:]]] == [
        RunStatus.queued,
        RunStatus.queued,
    ]


async def test_a_run_through_its_whole_life_reads_back_with_the_same_types(store: Store) -> None:
    run = await running(store)
    now = datetime.now(UTC)
    await store.apply(
        run.id,
        Change("run.rollback_started", expect=RUNNING,
               run={"status": RunStatus.rolling_back, "rollback_progress": 0.0},
               steps={0: {"rollback_status": "pending"}}),
        run.epoch,
    )  # fmt: skip
    await store.apply(
        run.id,
        Change("run.failed", {"error": {"message": "no"}},
               run={"status": RunStatus.failed, "finished_at": now, "error": {"message": "no"},
                    "result": {"success": False}, "summary": "failed at b",
                    "rollback_progress": 1, "cancel_requested": True, "recovery_attempts": 1},
               steps={0: {"rollback_status": "rolled_back", "rollback_started_at": now,
                          "rollback_finished_at": now, "rollback_error": {"m": 1},
                          "rollback_data": {"undo": 1}}}),
        run.epoch,
    )  # fmt: skip

    stored = await store.get_run(run.id)

    assert_types(stored)
    assert stored.status is RunStatus.failed
    assert (stored.finished_at, stored.rollback_progress) == (now, 1.0)
    assert stored.summary == "failed at b"
    assert (stored.cancel_requested, stored.recovery_attempts) == (True, 1)
    assert (stored.error, stored.result) == ({"message": "no"}, {"success": False})
    step = stored.steps[0]
    assert (step.rollback_status, step.rollback_started_at, step.rollback_finished_at) == (
        "rolled_back", now, now,
    )  # fmt: skip
    assert (step.rollback_error, step.rollback_data) == ({"m": 1}, {"undo": 1})
    for event in await store.run_events(run.id, 0, 10):
        assert_event_types(event)


async def test_a_failed_guard_is_an_invalid_transition_that_writes_nothing(store: Store) -> None:
    run = await create(store)

    with pytest.raises(InvalidTransition) as raised:
        await store.apply(run.id, progress(1))

    assert raised.value.extra == {"run_status": "queued"}
    assert await store.get_run(run.id) == run
    assert await store.last_event_id() == 1


async def test_a_status_the_table_does_not_allow_is_an_invalid_transition(store: Store) -> None:
    run = await create(store)

    with pytest.raises(InvalidTransition):
        await store.apply(run.id, Change("run.succeeded", run={"status": RunStatus.succeeded}))

    assert (await store.get_run(run.id)).status is RunStatus.queued
    assert await store.last_event_id() == 1


async def test_moves_change_the_status_only_from_the_statuses_they_list(store: Store) -> None:
    failing = Change(
        "step.failed",
        expect=frozenset({RunStatus.running, RunStatus.cancelling}),
        moves={RunStatus.running: RunStatus.rolling_back},
    )
    first = await running(store)
    second = await running(store)
    await store.apply(second.id, Change("run.cancel_requested", run={"status": "cancelling"}))

    moved = await store.apply(first.id, failing)
    kept = await store.apply(second.id, failing)

    assert moved.data["status"] == "rolling_back"
    assert kept.data["status"] == "cancelling"
    assert (await store.get_run(first.id)).status is RunStatus.rolling_back
    assert (await store.get_run(second.id)).status is RunStatus.cancelling


async def test_apply_to_an_unknown_run_is_run_not_found(store: Store) -> None:
    with pytest.raises(RunNotFound):
        await store.apply("01NOSUCHRUN000000000000000", progress(1))


async def test_a_stale_epoch_is_lease_lost_and_writes_nothing(store: Store) -> None:
    run = await running(store)
    await store.apply(run.id, progress(1), epoch=1)
    later = datetime.now(UTC) + timedelta(seconds=2 * LEASE)
    [taken] = await store.claim_orphans(1, "owner-2", LEASE, now=later)
    assert taken.epoch == 2

    with pytest.raises(LeaseLost):
        await store.apply(run.id, progress(2), epoch=1)

    assert (await store.get_run(run.id)).last_seq == taken.last_seq == 3
    assert (await store.apply(run.id, progress(2), epoch=2)).seq == 4


async def test_concurrent_writes_to_one_run_get_seqs_without_gaps_or_duplicates(
    store: Store,
) -> None:
    run = await running(store)
    writes = 100

    events = await asyncio.gather(*(store.apply(run.id, progress(i)) for i in range(writes)))

    assert sorted(e.seq for e in events) == list(range(3, writes + 3))
    stored = await store.run_events(run.id, 0, 1000)
    assert [e.seq for e in stored] == list(range(1, writes + 3))
    ids = [e.id for e in stored]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert (await store.get_run(run.id)).last_seq == writes + 2


async def test_a_reader_tailing_all_events_during_concurrent_writes_misses_none(
    store: Store,
) -> None:
    """Event ids become visible in order: a reader that resumes after the last id it saw
    (as ``GET /events`` does) never skips an event that committed later with a smaller id."""
    runs = [await running(store, owner=f"owner-{i}") for i in range(4)]
    per_run = 40
    seen: list[EventRow] = []

    async def write(run: RunRow) -> None:
        for i in range(per_run):
            await store.apply(run.id, progress(i))

    writers = asyncio.gather(*(write(run) for run in runs))
    while True:
        done = writers.done()
        batch = await store.all_events(seen[-1].id if seen else 0, 1000)
        seen.extend(batch)
        if done and not batch:
            break
    await writers

    everything = await store.all_events(0, 10_000)
    assert [e.id for e in seen] == [e.id for e in everything]
    assert [e.id for e in everything] == list(range(1, len(everything) + 1))
    for run in runs:
        own = [e.seq for e in everything if e.run_id == run.id]
        assert own == list(range(1, per_run + 3))


# -- claims, leases, release -----------------------------------------------------------------


async def test_claims_take_the_oldest_queued_runs_with_an_owner_a_lease_and_an_epoch(
    store: Store,
) -> None:
    created = sorted([(await create(store)).id for _ in range(3)])
    before = datetime.now(UTC)

    claimed = await store.claim_queued(2, "owner-1", LEASE)

    after = datetime.now(UTC)
    assert [run.id for run, _ in claimed] == created[:2]
    for run, event in claimed:
        assert_types(run)
        assert (run.status, run.owner, run.epoch, run.last_seq) == (
            RunStatus.running, "owner-1", 1, 2,
        )  # fmt: skip
        assert run.started_at is not None
        assert before <= run.started_at <= after
        assert run.lease_expires_at is not None
        assert before + timedelta(seconds=LEASE) <= run.lease_expires_at
        assert run.lease_expires_at <= after + timedelta(seconds=LEASE)
        assert (event.seq, event.type, event.data) == (
            2, "run.started", {"status": "running", "progress": 0.0, "owner": "owner-1"},
        )  # fmt: skip
        assert await store.get_run(run.id) == run
    assert [run.id for run, _ in await store.claim_queued(5, "owner-2", LEASE)] == created[2:]
    assert await store.claim_queued(5, "owner-2", LEASE) == []


async def test_concurrent_claims_never_take_the_same_run(store: Store) -> None:
    created = {(await create(store)).id for _ in range(12)}

    claims = await asyncio.gather(*(store.claim_queued(3, f"owner-{i}", LEASE) for i in range(6)))

    taken = [run.id for claim in claims for run, _ in claim]
    assert len(taken) == len(set(taken)) == 12
    assert set(taken) == created
    for i, claim in enumerate(claims):
        assert all(run.owner == f"owner-{i}" for run, _ in claim)


async def test_orphans_are_unfinished_runs_whose_lease_ran_out(store: Store) -> None:
    orphan = await running(store, owner="owner-1")
    finished = await running(store, owner="owner-1")
    await store.apply(finished.id, Change("run.succeeded", run={"status": "succeeded"}))
    await create(store)  # queued: not an orphan
    later = datetime.now(UTC) + timedelta(seconds=2 * LEASE)

    assert await store.claim_orphans(10, "owner-2", LEASE) == []  # the lease still runs
    assert await store.claim_orphans(10, "owner-1", LEASE, now=later) == []  # its own
    [taken] = await store.claim_orphans(10, "owner-2", LEASE, now=later)

    assert taken.id == orphan.id
    assert (taken.owner, taken.epoch, taken.status) == ("owner-2", 2, RunStatus.running)
    assert taken.lease_expires_at == later + timedelta(seconds=LEASE)
    assert_types(taken)
    assert await store.get_run(orphan.id) == taken
    assert await store.claim_orphans(10, "owner-3", LEASE) == []  # owner-2's lease is new


async def test_a_released_run_is_an_orphan_at_once(store: Store) -> None:
    run = await running(store)

    assert await store.release(run.id, epoch=2) is False
    assert await store.release(run.id, epoch=1) is True

    released = await store.get_run(run.id)
    assert (released.owner, released.lease_expires_at) == (None, None)
    [taken] = await store.claim_orphans(1, "owner-2", LEASE)
    assert (taken.id, taken.epoch) == (run.id, 2)


async def test_renewing_extends_held_leases_and_names_the_lost_ones(store: Store) -> None:
    kept = await running(store, owner="owner-1")
    lost = await running(store, owner="owner-1")
    await store.release(lost.id, lost.epoch)
    await store.claim_orphans(10, "owner-2", LEASE)  # takes the released run only
    assert kept.lease_expires_at is not None

    gone = await store.renew_leases(
        "owner-1", {kept.id: 1, lost.id: 1, "01NOSUCHRUN000000000000000": 1}, 2 * LEASE
    )

    assert gone == {lost.id, "01NOSUCHRUN000000000000000"}
    renewed = await store.get_run(kept.id)
    assert renewed.lease_expires_at is not None
    assert renewed.lease_expires_at > kept.lease_expires_at
    assert await store.renew_leases("owner-1", {kept.id: 2}, LEASE) == {kept.id}
    assert await store.renew_leases("owner-1", {}, LEASE) == set()


async def test_renewing_while_nothing_was_written_stops_at_the_runs_first_write(
    store: Store,
) -> None:
    quiet = await running(store, owner="owner-1")
    busy = await running(store, owner="owner-1")
    await store.apply(busy.id, progress(1), epoch=busy.epoch)
    epochs = {quiet.id: quiet.epoch, busy.id: busy.epoch}
    claimed = {quiet.id: quiet.last_seq, busy.id: busy.last_seq}
    assert quiet.lease_expires_at is not None
    busy_until = (await store.get_run(busy.id)).lease_expires_at

    unrenewed = await store.renew_leases("owner-1", epochs, 2 * LEASE, while_last_seq=claimed)

    assert unrenewed == {busy.id}
    renewed = await store.get_run(quiet.id)
    assert renewed.lease_expires_at is not None
    assert renewed.lease_expires_at > quiet.lease_expires_at
    assert (await store.get_run(busy.id)).lease_expires_at == busy_until
    assert await store.renew_leases("owner-1", epochs, LEASE) == set()  # without: both


# -- reads -----------------------------------------------------------------------------------


async def test_list_filters_and_pages_newest_first(store: Store) -> None:
    runs = [
        await create(store, "p" if i % 2 == 0 else "q", labels={"n": str(i), "team": "t"})
        for i in range(6)
    ]
    newest_first = sorted((r.id for r in runs), reverse=True)
    claimed = (await store.claim_queued(1, "owner-1", LEASE))[0][0]

    async def ids(
        filters: RunFilter | None = None, before: str | None = None, limit: int = 100
    ) -> list[str]:
        filters = filters if filters is not None else RunFilter()
        return [run.id for run in await store.list_runs(filters, before, limit)]

    assert await ids() == newest_first
    assert await ids(limit=2) == newest_first[:2]
    assert await ids(before=newest_first[1], limit=2) == newest_first[2:4]
    assert await ids(before=newest_first[-1]) == []
    assert await ids(RunFilter(pipeline="q")) == [r for r in newest_first if r in
                                                  {runs[1].id, runs[3].id, runs[5].id}]  # fmt: skip
    assert await ids(RunFilter(status=RunStatus.running)) == [claimed.id]
    assert await ids(RunFilter(labels={"n": "3"})) == [runs[3].id]
    assert await ids(RunFilter(labels={"n": "3", "team": "t"})) == [runs[3].id]
    assert await ids(RunFilter(labels={"n": "3", "team": "other"})) == []
    assert await ids(RunFilter(labels={"n": "3 "})) == []
    assert await ids(RunFilter(pipeline="p", labels={"team": "t"}, status=RunStatus.queued)) == [
        r for r in newest_first if r in {runs[0].id, runs[2].id, runs[4].id} and r != claimed.id
    ]
    by_id = {r.id: r for r in runs}
    middle = by_id[newest_first[2]].created_at
    assert await ids(RunFilter(created_after=middle)) == [
        r for r in newest_first if by_id[r].created_at >= middle
    ]
    assert await ids(RunFilter(created_before=middle)) == [
        r for r in newest_first if by_id[r].created_at < middle
    ]
    listed = await store.list_runs(RunFilter(), None, 100)
    assert listed == [await store.get_run(r) for r in newest_first]
    for run in listed:
        assert_types(run)


async def test_labels_with_any_key_are_filtered_exactly(store: Store) -> None:
    odd_labels = {"a.b": "1", "$.x": "2", "sp ace": "3", 'quote"d': "4", "a[0]": "5"}
    odd = await create(store, labels=odd_labels)
    await create(store, labels={"a": "1", "quote": "4"})

    for key, value in odd_labels.items():
        found = await store.list_runs(RunFilter(labels={key: value}), None, 10)
        assert [run.id for run in found] == [odd.id]


async def test_run_events_are_read_in_order_after_a_sequence(store: Store) -> None:
    run = await running(store)
    for i in range(5):
        await store.apply(run.id, progress(i))
    other = await running(store)

    events = await store.run_events(run.id, 0, 100)

    assert [e.seq for e in events] == [1, 2, 3, 4, 5, 6, 7]
    assert all(e.run_id == run.id for e in events)
    assert await store.run_events(run.id, 3, 2) == events[3:5]
    assert await store.run_events(run.id, 7, 10) == []
    assert [e.seq for e in await store.run_events(other.id, 0, 100)] == [1, 2]


async def test_all_events_filter_by_pipeline_and_type_after_an_id(store: Store) -> None:
    p = await running(store)
    await store.create_run(new_run("q"))
    await store.apply(p.id, progress(1))

    everything = await store.all_events(0, 100)

    assert [(e.id, e.type, e.pipeline) for e in everything] == [
        (1, "run.queued", "p"), (2, "run.started", "p"), (3, "run.queued", "q"),
        (4, "step.progress", "p"),
    ]  # fmt: skip
    assert await store.last_event_id() == 4
    assert await store.all_events(1, 2) == everything[1:3]
    assert await store.all_events(0, 100, pipelines=["q"]) == everything[2:3]
    queued_q = await store.all_events(0, 100, pipelines=["q", "nope"], types=["run.queued"])
    assert queued_q == everything[2:3]
    assert await store.all_events(0, 100, types=["run.queued", "step.progress"]) == [
        everything[0], everything[2], everything[3],
    ]  # fmt: skip
    assert await store.all_events(1, 100, pipelines=["p"], types=["run.queued"]) == []


async def test_logs_are_step_log_events_optionally_of_one_step(store: Store) -> None:
    run = await running(store)
    for step, line in (("a", "one"), ("b", "two"), ("a", "three")):
        await store.apply(run.id, Change("step.log", {"step": step, "line": line}))
    await store.apply(run.id, progress(1))

    logs = await store.run_logs(run.id, None, 0, 100)

    assert [(e.seq, e.data["step"], e.data["line"]) for e in logs] == [
        (3, "a", "one"), (4, "b", "two"), (5, "a", "three"),
    ]  # fmt: skip
    assert [e.data["line"] for e in await store.run_logs(run.id, "a", 0, 100)] == ["one", "three"]
    assert [e.data["line"] for e in await store.run_logs(run.id, "a", 3, 100)] == ["three"]
    assert [e.data["line"] for e in await store.run_logs(run.id, None, 0, 2)] == ["one", "two"]
    assert await store.run_logs(run.id, "zzz", 0, 100) == []


async def test_runs_are_counted_by_pipeline_and_status(store: Store) -> None:
    await running(store)
    await create(store)
    await create(store, "q")

    assert await store.count_runs() == {
        ("p", "running"): 1,
        ("p", "queued"): 1,
        ("q", "queued"): 1,
    }


# -- API keys --------------------------------------------------------------------------------


def new_key(key_id: str, name: str, scopes: tuple[str, ...] = ("read",)) -> NewApiKey:
    return NewApiKey(key_id, name, scopes, f"scrypt$hash-of-{key_id}")


async def test_api_keys_are_stored_listed_and_found_by_id(store: Store) -> None:
    assert await store.has_api_keys() is False
    assert await store.list_api_keys() == []

    first = await store.create_api_key(new_key("0123456789ab", "ci", ("read", "run")))
    second = await store.create_api_key(new_key("ba9876543210", "dashboard"))

    assert await store.has_api_keys() is True
    assert await store.list_api_keys() == [first, second]
    found = await store.get_api_key("0123456789ab")
    assert found == first
    assert found is not None
    assert (found.id, found.name, found.scopes) == ("0123456789ab", "ci", ("read", "run"))
    assert found.secret_hash == "scrypt$hash-of-0123456789ab"
    assert found.revoked_at is None
    assert_utc(found.created_at, optional=False)
    assert await store.get_api_key("ffffffffffff") is None


async def test_a_key_name_or_id_cannot_be_taken_twice(store: Store) -> None:
    await store.create_api_key(new_key("0123456789ab", "ci"))

    with pytest.raises(KeyNameTaken):
        await store.create_api_key(new_key("0123456789ac", "ci"))
    with pytest.raises(KeyNameTaken):
        await store.create_api_key(new_key("0123456789ab", "other"))
    assert [k.name for k in await store.list_api_keys()] == ["ci"]


async def test_revoking_a_key_by_id_or_name_keeps_its_row_and_first_revocation(
    store: Store,
) -> None:
    await store.create_api_key(new_key("0123456789ab", "ci"))
    await store.create_api_key(new_key("ba9876543210", "dashboard"))

    by_name = await store.revoke_api_key("ci")
    by_id = await store.revoke_api_key("ba9876543210")
    again = await store.revoke_api_key("0123456789ab")

    assert by_name is not None
    assert by_id is not None
    assert again is not None
    assert_utc(by_name.revoked_at, optional=False)
    assert_utc(by_id.revoked_at, optional=False)
    assert again.revoked_at == by_name.revoked_at
    assert await store.get_api_key("0123456789ab") == by_name
    assert await store.has_api_keys() is True  # revoked keys count
    assert [k.revoked_at is not None for k in await store.list_api_keys()] == [True, True]
    assert await store.revoke_api_key("nobody") is None
    with pytest.raises(KeyNameTaken):  # a revoked key's name stays taken
        await store.create_api_key(new_key("0123456789ff", "ci"))


async def test_an_id_wins_over_a_name_that_looks_like_it(store: Store) -> None:
    await store.create_api_key(new_key("0123456789ab", "ba9876543210"))
    await store.create_api_key(new_key("ba9876543210", "other"))

    revoked = await store.revoke_api_key("ba9876543210")

    assert revoked is not None
    assert revoked.name == "other"


# -- runs' owners ----------------------------------------------------------------------------


def owned(owner: str | None, pipeline: str = "p") -> NewRun:
    return NewRun(pipeline, {"n": 1}, {}, STEPS, owner_key_id=owner)


async def test_a_run_keeps_the_key_that_created_it(store: Store) -> None:
    created, _event = await store.create_run(owned("0123456789ab"))
    anonymous, _event = await store.create_run(owned(None))

    assert created.owner_key_id == "0123456789ab"
    assert (await store.get_run(created.id)).owner_key_id == "0123456789ab"
    assert anonymous.owner_key_id is None
    assert (await store.get_run(anonymous.id)).owner_key_id is None
    claimed = {run.id: run for run, _event in await store.claim_queued(2, "worker", LEASE)}
    assert claimed[created.id].owner_key_id == "0123456789ab"
    assert claimed[anonymous.id].owner_key_id is None


async def test_lists_filter_by_owner_before_paging(store: Store) -> None:
    owners = ["a", "b", None, "a", "b", "a", None, "a"]
    runs = [(await store.create_run(owned(o)))[0] for o in owners]
    mine = [r.id for r in reversed(runs) if r.owner_key_id == "a"]

    first = await store.list_runs(RunFilter(owner_key_id="a"), None, 2)
    second = await store.list_runs(RunFilter(owner_key_id="a"), first[-1].id, 2)
    third = await store.list_runs(RunFilter(owner_key_id="a"), second[-1].id, 2)

    assert [r.id for r in first + second] == mine
    assert third == []
    assert len(await store.list_runs(RunFilter(), None, 100)) == len(owners)
    assert await store.list_runs(RunFilter(owner_key_id="c"), None, 100) == []


async def test_all_events_filter_by_owner_in_the_query(store: Store) -> None:
    a, _event = await store.create_run(owned("a"))
    await store.create_run(owned("b"))
    await store.create_run(owned(None, "q"))
    a2, _event = await store.create_run(owned("a", "q"))

    everything = await store.all_events(0, 100)
    mine = await store.all_events(0, 100, owner_key_id="a")
    paged = await store.all_events(mine[0].id, 1, owner_key_id="a")

    assert len(everything) == 4
    assert [e.run_id for e in mine] == [a.id, a2.id]
    assert paged == mine[1:]
    assert await store.all_events(0, 100, pipelines=["q"], owner_key_id="a") == mine[1:]
    assert await store.all_events(0, 100, owner_key_id="nobody") == []


# -- server secrets and stream tokens --------------------------------------------------------


async def test_a_server_secret_is_made_once_and_kept(store: Store) -> None:
    first = await store.server_secret("signing", "one")
    second = await store.server_secret("signing", "two")
    other = await store.server_secret("other", "three")

    assert (first, second, other) == ("one", "one", "three")


async def test_concurrent_first_starts_agree_on_one_secret(store: Store) -> None:
    secrets = await asyncio.gather(*(store.server_secret("s", f"c{i}") for i in range(8)))

    assert len(set(secrets)) == 1


async def test_a_stream_token_is_used_once(store: Store) -> None:
    later = datetime.now(UTC) + timedelta(minutes=5)

    assert await store.use_stream_token("t1", later) is True
    assert await store.use_stream_token("t1", later) is False
    assert await store.use_stream_token("t2", later) is True
    results = await asyncio.gather(*(store.use_stream_token("t3", later) for _ in range(8)))
    assert sorted(results) == [False] * 7 + [True]


async def test_used_tokens_are_forgotten_once_expired(store: Store, url: str) -> None:
    past = datetime.now(UTC) - timedelta(seconds=1)
    later = datetime.now(UTC) + timedelta(minutes=5)
    await store.use_stream_token("old", past)

    await store.use_stream_token("new", later)

    assert [row[0] for row in execute(url, "SELECT id FROM used_stream_tokens")] == ["new"]


# -- queue quotas ----------------------------------------------------------------------------


def limited(owner: str | None, pipeline: str = "p", *, per_key: int | None = None,
            per_pipeline: int | None = None, key: str | None = None) -> NewRun:  # fmt: skip
    return NewRun(
        pipeline, {"n": 1}, {}, STEPS, key, "h" if key else None, owner,
        max_queued_per_key=per_key, max_queued_per_pipeline=per_pipeline,
    )  # fmt: skip


async def dequeue_oldest(store: Store, filters: RunFilter) -> None:
    """Take the oldest queued run matching ``filters`` out of the queue."""
    queued = await store.list_runs(filters, None, 100)
    oldest = queued[-1]
    await store.apply(oldest.id, Change("run.cancelled", run={"status": RunStatus.cancelled}))


async def test_a_key_may_queue_up_to_its_limit(store: Store) -> None:
    for _ in range(3):
        await store.create_run(limited("a", per_key=3))
    await store.create_run(limited("b", per_key=3))  # another key's queue
    await store.create_run(limited(None, per_key=3))  # no key, no per-key limit

    with pytest.raises(QueueFull) as refused:
        await store.create_run(limited("a", per_key=3))

    assert refused.value.status == 429
    assert refused.value.headers["Retry-After"].isdigit()
    assert len(await store.list_runs(RunFilter(owner_key_id="a"), None, 100)) == 3
    await dequeue_oldest(store, RunFilter(owner_key_id="a"))
    await store.create_run(limited("a", per_key=3))  # only queued runs count


async def test_a_pipeline_may_queue_up_to_its_limit(store: Store) -> None:
    await store.create_run(limited("a", per_pipeline=2))
    await store.create_run(limited("b", per_pipeline=2))
    await store.create_run(limited("b", "q", per_pipeline=2))

    with pytest.raises(QueueFull, match="pipeline 'p'"):
        await store.create_run(limited(None, per_pipeline=2))
    await dequeue_oldest(store, RunFilter(pipeline="p"))
    await store.create_run(limited(None, per_pipeline=2))


async def test_a_repeat_with_an_idempotency_key_is_answered_even_when_the_queue_is_full(
    store: Store,
) -> None:
    first, _event = await store.create_run(limited("a", per_key=1, key="k"))

    again, event = await store.create_run(limited("a", per_key=1, key="k"))

    assert (again.id, event) == (first.id, None)
    with pytest.raises(QueueFull):
        await store.create_run(limited("a", per_key=1, key="other"))
