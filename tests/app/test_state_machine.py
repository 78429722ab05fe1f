"""Random sequences of run operations against the live app, checked against the event log.

A synchronous hypothesis state machine drives the app through a blocking portal: the app,
its lifespan (workers included) and an httpx client over ``ASGITransport`` live on the
portal's event loop thread, and each rule calls into it. Rules create runs of the
``controlled`` pipeline (failing at a step, failing to undo steps, held at a gate), cancel
them with or without rollback, open their gates, and let them finish. After every rule,
for every run: every status is one of the enums, the status transitions in its event log are
allowed by ``app.states.TRANSITIONS``, the log is gapless from 1, a rollback is announced
before its steps, nothing follows the final event, progress never moves backwards, and
``GET /runs/{id}`` is exactly what ``replay()`` of the log up to the event that GET reflects
(``last_event_id``) says. Runs race the workers, so GET and the log are compared at the
same event. When a run ends, its steps and rollback are checked against a model of what
its params and the cancel (if any) must produce; at teardown every gate is opened and
every run awaited (on the bus, with a timeout).
"""

from __future__ import annotations

import functools
import itertools
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from fastapi import FastAPI
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from app.main import create_app
from app.runs.replay import ReplayedRun, ReplayedStep, StepSpec, replay
from app.settings import Settings
from app.states import TERMINAL, RollbackStatus, RunStatus, StepStatus, can_transition
from app.store.records import EventRow

from .conftest import WAIT, services_of, wait_until_finished
from .pipelines import GATES

T = TypeVar("T")

WORKERS = 2  # few, so that held runs make others queue
STEPS = ("a", "b", "c")
MAX_EVENTS = 10_000
TERMINAL_EVENTS = frozenset({"run.succeeded", "run.failed", "run.cancelled"})
step_names = st.sampled_from(STEPS)


@dataclass
class RunModel:
    """What the test knows of one run: what it asked for and what it did to it."""

    id: str
    specs: tuple[StepSpec, ...]
    fail_at: str | None
    undo_fails: frozenset[str]
    gate_at: str | None
    gate: str
    gate_opened: bool = False
    reached: bool = False  # the test saw the run arrive at its gate
    cancel_rollback: bool | None = None  # set once a cancel was accepted
    cancelled_at_gate: bool = False  # the accepted cancel found the run waiting at its gate
    cancelled_queued: bool = False  # the accepted cancel found the run queued
    finished: bool = False

    @property
    def stops_at_gate(self) -> bool:
        """Whether the run gets to its gate (it fails no earlier step)."""
        if self.gate_at is None:
            return False
        return self.fail_at is None or STEPS.index(self.fail_at) >= STEPS.index(self.gate_at)

    @property
    def holds_a_worker(self) -> bool:
        """Whether the run will take a worker and keep it until its gate is opened."""
        return self.stops_at_gate and not self.gate_opened and self.cancel_rollback is None

    @property
    def waiting_at_gate(self) -> bool:
        """Known to wait at its gate; from the model only, so that rule choices do not
        depend on timing (hypothesis replays them)."""
        return self.holds_a_worker and self.reached


def observed(body: dict[str, Any]) -> ReplayedRun:
    """The part of a ``GET /runs/{id}`` body that ``replay()`` rebuilds; enums checked."""
    return ReplayedRun(
        status=RunStatus(body["status"]),
        progress=body["progress"],
        rollback_progress=body["rollback_progress"],
        steps=tuple(
            ReplayedStep(
                name=s["name"],
                weight=s["weight"],
                can_rollback=s["can_rollback"],
                status=StepStatus(s["status"]),
                progress=s["progress"],
                attempts=s["attempts"],
                rollback_status=RollbackStatus(s["rollback"]["status"]),
            )
            for s in body["steps"]
        ),
        last_seq=body["last_event_id"],
    )


def check_log(events: list[EventRow]) -> None:
    """Gapless from 1, starts queued, allowed transitions, monotone progress, a rollback
    announced before its steps, nothing after the final event."""
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert (events[0].type, events[0].data["status"]) == ("run.queued", "queued")
    types = [e.type for e in events]
    if "step.rollback_started" in types:
        assert "run.rollback_started" in types[: types.index("step.rollback_started")], types
    for before, after in itertools.pairwise(events):
        old, new = RunStatus(before.data["status"]), RunStatus(after.data["status"])
        assert old == new or can_transition(old, new), (before.seq, old, after.type, new)
        assert after.data["progress"] >= before.data["progress"], (after.seq, after.type)
        assert before.type not in TERMINAL_EVENTS, f"{after.type} after {before.type}"
    if events[-1].type in TERMINAL_EVENTS:
        assert RunStatus(events[-1].data["status"]) in TERMINAL


def expected_steps(
    model: RunModel, stopped_at: str | None, stop: StepStatus
) -> list[tuple[str, str]]:
    """(status, rollback status) of each step of a run that stopped at ``stopped_at`` with
    ``stop`` (failed or cancelled) and rolled back if it was asked to."""
    if stopped_at is None:
        return [("succeeded", "not_needed")] * len(STEPS)
    k = STEPS.index(stopped_at)
    rolls_back = stop is StepStatus.failed or bool(model.cancel_rollback)
    result = []
    for i, name in enumerate(STEPS):
        status = "succeeded" if i < k else stop.value if i == k else "pending"
        undo = "not_needed"
        if rolls_back and i <= k:
            undo = "failed" if name in model.undo_fails else "rolled_back"
        result.append((status, undo))
    return result


def check_outcome(model: RunModel, body: dict[str, Any]) -> None:
    """A finished run did what its params and the cancel (if any) say it must."""
    status = body["status"]
    steps = [(s["status"], s["rollback"]["status"]) for s in body["steps"]]
    stopped_at: str | None = None
    if model.cancelled_queued:
        assert status == "cancelled"
        assert steps == [("pending", "not_needed")] * len(STEPS)
    elif model.cancelled_at_gate:
        assert status == "cancelled"
        assert steps == expected_steps(model, model.gate_at, StepStatus.cancelled)
        stopped_at = model.gate_at
    elif model.cancel_rollback is None:
        assert status == ("failed" if model.fail_at else "succeeded"), body["summary"]
        assert steps == expected_steps(model, model.fail_at, StepStatus.failed)
        stopped_at = model.fail_at
    else:  # cancelled at a moment the test does not know: only the status is certain
        assert status in {"cancelled", "failed", "succeeded"}
    weights = [weight for _, weight, _ in model.specs]
    if status == "succeeded":
        assert body["progress"] == pytest.approx(1.0)
    elif stopped_at is not None:  # the stopped step may have reported part of its progress
        k = STEPS.index(stopped_at)
        assert sum(weights[:k]) - 1e-9 <= body["progress"] <= sum(weights[: k + 1]) + 1e-9
    if any(undo != "not_needed" for _, undo in steps):
        assert body["rollback_progress"] == 1.0


class RunsMachine(RuleBasedStateMachine):
    """Runs created, cancelled, released and finished in random order."""

    runs = Bundle("runs")

    def __init__(self, portal: BlockingPortal, directory: Path) -> None:
        super().__init__()
        self.portal = portal
        self.models: dict[str, RunModel] = {}
        self.stack = ExitStack()
        database = directory / f"{uuid.uuid4().hex}.db"
        settings_ = Settings(
            database_url=f"sqlite+aiosqlite:///{database}",
            pipelines=["tests.app.pipelines"],
            demo_pipelines=False,
            entry_points=False,
            workers=WORKERS,
            poll_seconds=0.05,
        )
        self.app: FastAPI = portal.call(create_app, settings_)
        self.stack.enter_context(
            portal.wrap_async_context_manager(self.app.router.lifespan_context(self.app))
        )
        transport = httpx.ASGITransport(app=self.app)
        client = httpx.AsyncClient(transport=transport, base_url="http://stepline.test")
        self.client = self.stack.enter_context(portal.wrap_async_context_manager(client))

    def call(self, function: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        """Run ``function`` on the app's event loop and return what it returns."""
        return self.portal.call(functools.partial(function, *args, **kwargs))

    def holders(self, *, besides: RunModel | None = None) -> int:
        return sum(m.holds_a_worker for m in self.models.values() if m is not besides)

    # -- rules ---------------------------------------------------------------------------

    @rule(
        target=runs,
        fail_at=st.none() | step_names,
        undo_fails=st.frozensets(step_names),
        gate_at=st.sampled_from([None, *STEPS]),
        progress_calls=st.sampled_from([0, 3]),
    )
    def create(
        self,
        fail_at: str | None,
        undo_fails: frozenset[str],
        gate_at: str | None,
        progress_calls: int,
    ) -> str:
        gate = f"machine-{uuid.uuid4().hex}"
        params = {"fail_at": fail_at, "undo_fails": sorted(undo_fails), "gate_at": gate_at,
                  "gate": gate, "progress_calls": progress_calls, "logs": 1}  # fmt: skip
        request = {"pipeline": "controlled", "params": params}
        response = self.call(self.client.post, "/runs", json=request)
        assert response.status_code == 202, response.text
        body = response.json()
        specs = tuple((s["name"], s["weight"], s["can_rollback"]) for s in body["steps"])
        model = RunModel(body["id"], specs, fail_at, undo_fails, gate_at, gate)
        self.models[model.id] = model
        return model.id

    def reach_gate(self, model: RunModel) -> None:
        """Wait until a run that holds a worker is at its gate, if it is sure to get one."""
        if model.holds_a_worker and self.holders() <= WORKERS:
            assert GATES.reached(model.gate).wait(WAIT), "a run never reached its gate"
            model.reached = True

    @rule(
        target=runs,
        fail_at=st.none() | step_names,
        gate_at=st.sampled_from([None, *STEPS]),
        rollback=st.booleans(),
    )
    def create_and_cancel_at_once(
        self, fail_at: str | None, gate_at: str | None, rollback: bool
    ) -> str:
        """The cancel races the worker that claims the run."""
        run_id = self.create(fail_at, frozenset(), gate_at, 0)
        self.cancel_run(self.models[run_id], rollback)
        return run_id

    @rule(
        target=runs,
        fail_at=st.none() | step_names,
        undo_fails=st.frozensets(step_names),
        gate_at=step_names,
    )
    def create_held(self, fail_at: str | None, undo_fails: frozenset[str], gate_at: str) -> str:
        """A run held at its gate (or queued, when held runs take every worker)."""
        run_id = self.create(fail_at, undo_fails, gate_at, 0)
        self.reach_gate(self.models[run_id])
        return run_id

    @rule(run_id=runs)
    def wait_at_gate(self, run_id: str) -> None:
        self.reach_gate(self.models[run_id])

    @rule(run_id=runs, rollback=st.booleans())
    def cancel(self, run_id: str, rollback: bool) -> None:
        self.cancel_run(self.models[run_id], rollback)

    @precondition(lambda self: any(m.waiting_at_gate for m in self.models.values()))
    @rule(data=st.data(), rollback=st.booleans())
    def cancel_a_held_run(self, data: st.DataObject, rollback: bool) -> None:
        held = sorted(m.id for m in self.models.values() if m.waiting_at_gate)
        self.cancel_run(self.models[data.draw(st.sampled_from(held), label="run_id")], rollback)

    def cancel_run(self, model: RunModel, rollback: bool) -> None:
        """A run is cancelled once: at its gate it is cancelling; when every worker is held
        at a gate, any other run is queued (cancelled at once) or finished (409)."""
        at_gate = model.waiting_at_gate
        workers_full = sum(m.waiting_at_gate for m in self.models.values()) >= WORKERS
        response = self.call(
            self.client.post, f"/runs/{model.id}/cancel", json={"rollback": rollback}
        )
        if model.finished or model.cancel_rollback is not None or at_gate:
            expected = 409 if model.finished or model.cancel_rollback is not None else 202
            assert response.status_code == expected, response.text
        if response.status_code == 409:
            assert response.headers["content-type"] == "application/problem+json"
            assert response.json()["type"].endswith("invalid-transition")
            return
        assert response.status_code == 202, response.text
        body = response.json()
        if at_gate:
            assert body["status"] == "cancelling"
        elif workers_full:
            assert (body["status"], body["started_at"]) == ("cancelled", None)
        else:
            assert body["status"] in {"cancelling", "cancelled"}
        model.cancel_rollback = rollback
        model.cancelled_at_gate = at_gate
        model.cancelled_queued = body["status"] == "cancelled" and body["started_at"] is None

    @rule(run_id=runs)
    def open_gate(self, run_id: str) -> None:
        model = self.models[run_id]
        GATES.open(model.gate)
        model.gate_opened = True

    @rule(run_id=runs)
    def finish(self, run_id: str) -> None:
        """Open the run's gate and wait for its end, if a worker is sure to take it."""
        model = self.models[run_id]
        self.open_gate(run_id)
        if self.holders(besides=model) < WORKERS:
            self.settle(model)

    # -- invariants ----------------------------------------------------------------------

    @invariant()
    def every_log_explains_its_run(self) -> None:
        for model in self.models.values():
            self.check_run(model)

    def check_run(self, model: RunModel) -> dict[str, Any]:
        response = self.call(self.client.get, f"/runs/{model.id}")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        events = self.call(services_of(self.app).store.run_events, model.id, 0, MAX_EVENTS)
        check_log(events)
        seen = body["last_event_id"]
        assert len(events) >= seen
        assert replay(events[:seen], model.specs) == observed(body)
        return body

    def settle(self, model: RunModel) -> None:
        if not model.finished:
            status = self.call(wait_until_finished, self.app, model.id)
            assert status in TERMINAL
            model.finished = True
            check_outcome(model, self.check_run(model))

    def teardown(self) -> None:
        try:
            for model in self.models.values():
                self.open_gate(model.id)
            for model in self.models.values():
                self.settle(model)
        finally:
            for model in self.models.values():
                GATES.open(model.gate)
            self.stack.close()


@pytest.fixture
def portal() -> Iterator[BlockingPortal]:
    with start_blocking_portal(backend="asyncio") as blocking_portal:
        yield blocking_portal


def test_runs_under_random_operations_match_their_event_logs(
    portal: BlockingPortal, tmp_path: Path
) -> None:
    run_state_machine_as_test(
        lambda: RunsMachine(portal, tmp_path),
        settings=settings(max_examples=20, stateful_step_count=10, deadline=None),
    )
