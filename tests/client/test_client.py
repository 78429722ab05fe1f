"""Both clients against a real server process."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from stepline_client import AsyncClient, Client, Conflict, Event, InvalidRequest, NotFound, Run
from stepline_client.models import TERMINAL_STATUSES

from .conftest import WAIT

TERMINAL = {"run.succeeded", "run.failed", "run.cancelled"}


def seqs(events: list[Event]) -> list[int]:
    numbers = [e.seq for e in events]
    assert None not in numbers
    return [n for n in numbers if n is not None]


def assert_gapless_after_the_snapshot(events: list[Event]) -> None:
    """A run's stream: its snapshot, then each later event once, in order; a run that had
    already finished sends only its terminal event after the snapshot, with the same seq."""
    first, *rest = seqs(events)
    assert events[0].type == "run.snapshot"
    if events[0].data["status"] in TERMINAL_STATUSES:
        assert rest == [first]
    else:
        assert rest == list(range(first + 1, first + 1 + len(rest)))


def assert_failed_at_b(run: Run) -> None:
    assert run.status == "failed"
    assert [s.status for s in run.steps] == ["succeeded", "failed", "pending"]
    assert [s.rollback.status for s in run.steps] == ["rolled_back", "rolled_back", "not_needed"]
    assert run.steps[1].error is not None
    assert run.steps[1].error.message == "b failed on purpose"


def test_a_run_created_and_waited_for_succeeds_with_its_steps(base_url: str) -> None:
    with Client(base_url) as client:
        run = client.runs.create("controlled", labels={"team": "client"})
        done = client.runs.wait(run.id, timeout=WAIT)

    assert run.status == "queued"
    assert done.status == "succeeded"
    assert done.progress == 1
    assert [(s.name, s.status) for s in done.steps] == [
        ("a", "succeeded"),
        ("b", "succeeded"),
        ("c", "succeeded"),
    ]
    assert done.labels == {"team": "client"}


def test_a_failing_run_ends_failed_with_its_rollbacks(base_url: str) -> None:
    with Client(base_url) as client:
        run = client.runs.create("controlled", params={"fail_at": "b"})
        assert_failed_at_b(client.runs.wait(run.id, timeout=WAIT))


def test_an_unknown_run_is_not_found_with_its_problem(base_url: str) -> None:
    with Client(base_url) as client, pytest.raises(NotFound) as raised:
        client.runs.get("no-such-run")

    assert raised.value.status == 404
    assert raised.value.problem["status"] == 404
    assert raised.value.problem["title"]


def test_an_invalid_body_is_an_invalid_request_with_field_errors(base_url: str) -> None:
    with Client(base_url) as client, pytest.raises(InvalidRequest) as raised:
        client.runs.create("controlled", params={"no_such_param": 1})

    assert raised.value.problem["errors"]


def test_the_same_idempotency_key_returns_the_same_run(base_url: str) -> None:
    key = str(uuid.uuid4())
    with Client(base_url) as client:
        first = client.runs.create("controlled", idempotency_key=key)
        second = client.runs.create("controlled", idempotency_key=key)
        other = client.runs.create("controlled")

    assert second.id == first.id
    assert other.id != first.id


def test_events_arrive_in_order_and_end_at_the_terminal_event(base_url: str) -> None:
    with Client(base_url) as client:
        run = client.runs.create("controlled", params={"logs": 2})
        events = list(client.runs.events(run.id, timeout=WAIT))
        logs = client.runs.logs(run.id)
        listed = client.runs.list(pipeline="controlled", limit=200)

    assert_gapless_after_the_snapshot(events)
    assert events[-1].type == "run.succeeded"
    assert [e for e in events if e.terminal] == [events[-1]]
    assert len(logs.items) == 6
    assert run.id in {r.id for r in listed.items}


def test_the_events_of_a_finished_run_are_its_snapshot_then_its_terminal_event(
    base_url: str,
) -> None:
    with Client(base_url) as client:
        run = client.runs.wait(client.runs.create("controlled").id, timeout=WAIT)
        events = list(client.runs.events(run.id, timeout=WAIT))

    assert [e.type for e in events] == ["run.snapshot", "run.succeeded"]
    assert seqs(events) == [run.last_event_id, run.last_event_id]


def test_resuming_after_an_id_gets_only_later_events(base_url: str) -> None:
    with Client(base_url) as client:
        run = client.runs.create("controlled")
        client.runs.wait(run.id, timeout=WAIT)
        later = list(client.runs.events(run.id, last_event_id=2, timeout=WAIT))

    assert later[0].seq == 3
    assert later[-1].type == "run.succeeded"


def test_catalogue_health_and_tokens(base_url: str) -> None:
    with Client(base_url) as client:
        names = {p.name for p in client.pipelines.list()}
        pipeline = client.pipelines.get("controlled")
        run = client.runs.create("controlled")
        token = client.runs.stream_token(run.id)
        client.runs.wait(run.id, timeout=WAIT)
        assert client.healthz()
        assert client.readyz()
        assert "stepline_runs" in client.metrics()
        assert client.events.stream_token().url.startswith("/events")

    assert {"controlled", "file_gate"} <= names
    assert [s.name for s in pipeline.steps] == ["a", "b", "c"]
    assert token.url.startswith(f"/runs/{run.id}/events")


@pytest.mark.anyio
async def test_async_create_wait_fail_and_not_found(base_url: str) -> None:
    async with AsyncClient(base_url) as client:
        run = await client.runs.create("controlled")
        failing = await client.runs.create("controlled", params={"fail_at": "b"})
        done = await client.runs.wait(run.id, timeout=WAIT)
        failed = await client.runs.wait(failing.id, timeout=WAIT)
        key = str(uuid.uuid4())
        first = await client.runs.create("controlled", idempotency_key=key)
        second = await client.runs.create("controlled", idempotency_key=key)
        with pytest.raises(NotFound) as raised:
            await client.runs.get("no-such-run")
        assert [p.name for p in await client.pipelines.list()]

    assert done.status == "succeeded"
    assert [s.status for s in done.steps] == ["succeeded"] * 3
    assert_failed_at_b(failed)
    assert second.id == first.id
    assert raised.value.problem["status"] == 404


@pytest.mark.anyio
async def test_async_events_arrive_in_order_and_end_at_the_terminal_event(base_url: str) -> None:
    async with AsyncClient(base_url) as client:
        run = await client.runs.create("controlled", params={"fail_at": "c"})
        events = [e async for e in client.runs.events(run.id)]
        global_events = []
        async for event in client.events.stream(pipeline="controlled", last_event_id=0):
            global_events.append(event)
            if event.data["run_id"] == run.id and event.terminal:
                break

    assert_gapless_after_the_snapshot(events)
    assert events[-1].type == "run.failed"
    mine = [e.type for e in global_events if e.data["run_id"] == run.id]
    # The snapshot stands for the run's first events; the global stream sends each of them.
    assert mine[0] == "run.queued"
    assert mine[-(len(events) - 1) :] == [e.type for e in events[1:]]
    ids = seqs(global_events)
    assert ids == sorted(set(ids))


def test_cancelling_a_finished_run_is_a_conflict_and_events_of_no_run_not_found(
    base_url: str,
) -> None:
    with Client(base_url) as client:
        run = client.runs.wait(client.runs.create("controlled").id, timeout=WAIT)
        with pytest.raises(Conflict) as conflict:
            client.runs.cancel(run.id)
        with pytest.raises(NotFound):
            list(client.runs.events("no-such-run", timeout=WAIT))
        labelled = client.runs.list(labels={"team": "client"})

    assert conflict.value.problem["status"] == 409
    assert {r.labels["team"] for r in labelled.items} == {"client"}


def test_a_gated_run_cancelled_through_the_client_ends_cancelled(
    base_url: str, tmp_path: Path
) -> None:
    with Client(base_url) as client:
        run = client.runs.create("file_gate", params={"gate": str(tmp_path / "never")})
        for event in client.runs.events(run.id, timeout=WAIT):
            if event.type == "step.started" and event.data.get("step") == "b":
                break
        client.runs.cancel(run.id, rollback=True)
        done = client.runs.wait(run.id, timeout=WAIT)

    assert done.status == "cancelled"
    assert done.steps[0].rollback.status == "not_supported"
