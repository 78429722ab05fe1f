"""Real processes, real signals: a killed server loses no run and undoes nothing twice."""

from __future__ import annotations

import collections
import contextlib
import json
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .processes import START_SECONDS, free_port, stepline_serve

pytestmark = pytest.mark.slow

SETTLE_TIMEOUT = 60.0
TERMINAL_EVENTS = {"run.succeeded", "run.failed", "run.cancelled"}
ACKNOWLEDGE_ITERATIONS = 200
MAX_RECOVERIES = 3


@contextlib.contextmanager
def server(database: Path, port: int, *, die_ok: bool = False) -> Iterator[subprocess.Popen[bytes]]:
    """``stepline serve`` in a process of its own, with short leases."""
    env = {"STEPLINE_LEASE_SECONDS": "2", "STEPLINE_WORKERS": "4", "STEPLINE_POLL_SECONDS": "0.1"}
    with stepline_serve(database, port, env, die_ok=die_ok) as process:
        yield process


def rows(database: Path, sql: str, *params: object) -> list[tuple[object, ...]]:
    with contextlib.closing(sqlite3.connect(database)) as conn:
        return conn.execute(sql, params).fetchall()


def events(port: int) -> Iterator[dict[str, object]]:
    """Every run's events, from the first, as the server's ``/events`` stream sends them."""
    headers = {"Last-Event-ID": "0"}
    timeout = httpx.Timeout(SETTLE_TIMEOUT, connect=5)
    with httpx.stream("GET", f"http://127.0.0.1:{port}/events", headers=headers,
                      timeout=timeout) as response:  # fmt: skip
        for line in response.iter_lines():
            if line.startswith("data:"):
                yield json.loads(line[5:])


def failed_or_dead(port: int, run_id: str) -> bool:
    """Follow the event stream until the run fails (True) or the server dies (False)."""
    try:
        for event in events(port):
            if event["type"] == "run.failed" and event["run_id"] == run_id:
                return True
    except httpx.TransportError:
        return False
    return False


def wait_all_terminal(port: int, run_ids: list[str]) -> None:
    """Follow the server's event stream until every run has ended."""
    waiting = set(run_ids)
    deadline = time.monotonic() + SETTLE_TIMEOUT
    for event in events(port):
        if event["type"] in TERMINAL_EVENTS:
            waiting.discard(str(event["run_id"]))
        if not waiting:
            return
        assert time.monotonic() < deadline, f"runs still unfinished: {sorted(waiting)}"


def check_ledger(database: Path, ledger: Path, run_ids: list[str]) -> None:
    """Every step's effects were applied or undone exactly as its final state says."""
    lines = collections.Counter(ledger.read_text(encoding="utf-8").split("\n"))
    for run_id in run_ids:
        for name, status, rollback in rows(
            database,
            'SELECT name, status, rollback_status FROM step_runs WHERE run_id = ? ORDER BY "index"',
            run_id,
        ):
            done, undone = lines[f"do {run_id} {name}"], lines[f"undo {run_id} {name}"]
            if status == "pending":
                assert (done, undone) == (0, 0), (run_id, name)
            elif rollback == "rolled_back":
                # The interrupted step may have died before doing anything: its undo
                # still runs, once, and must cope with that.
                assert done <= 1, (run_id, name, done, undone)
                assert undone == 1, (run_id, name, done, undone)
            else:
                assert status in ("succeeded", "skipped"), (run_id, name, status, rollback)
                assert done >= 1, (run_id, name, done, undone)
                assert undone == 0, (run_id, name, done, undone)
        seqs = [seq for (seq,) in rows(
            database, "SELECT seq FROM events WHERE run_id = ? ORDER BY seq", run_id
        )]  # fmt: skip
        assert seqs == list(range(1, len(seqs) + 1)), run_id


def start_runs(
    port: int, ledger: Path, count: int, step_seconds: float, **params: object
) -> list[str]:
    body = {
        "pipeline": "ledger",
        "params": {"ledger": str(ledger), "step_seconds": step_seconds, **params},
    }
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        return [client.post("/runs", json=body).json()["id"] for _ in range(count)]


def wait_for(port: int, type_: str, step: str) -> None:
    """Follow the event stream until some run has an event ``type_`` for ``step``."""
    for event in events(port):
        if event["type"] == type_ and event.get("step") == step:
            return


def test_a_kill_9_mid_step_loses_no_run_and_undoes_exactly_what_ran(tmp_path: Path) -> None:
    database, ledger, port = tmp_path / "s.db", tmp_path / "ledger.txt", free_port()
    with server(database, port) as process:
        run_ids = start_runs(port, ledger, 50, step_seconds=0.2)
        wait_for(port, "step.started", "s2")
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    assert rows(database, "SELECT count(*) FROM runs WHERE status = 'running'")[0][0] > 0

    with server(database, port):
        wait_all_terminal(port, run_ids)

    check_ledger(database, ledger, run_ids)
    recovered = rows(database, "SELECT count(DISTINCT run_id) FROM events WHERE type = ?",
                     "run.recovered")  # fmt: skip
    assert recovered[0][0] >= 1


def test_a_kill_9_during_a_rollback_continues_it_without_undoing_a_step_twice(
    tmp_path: Path,
) -> None:
    database, ledger, port = tmp_path / "s.db", tmp_path / "ledger.txt", free_port()
    with server(database, port) as process:
        run_ids = start_runs(port, ledger, 10, 0.05, fail_at="s3", undo_seconds=0.3)
        wait_for(port, "step.rollback_started", "s2")
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    assert rows(database, "SELECT count(*) FROM runs WHERE status = 'rolling_back'")[0][0] > 0

    with server(database, port):
        wait_all_terminal(port, run_ids)

    check_ledger(database, ledger, run_ids)
    statuses = {status for (status,) in rows(database, "SELECT status FROM runs")}
    assert statuses == {"failed"}
    undone = rows(database, "SELECT DISTINCT rollback_status FROM step_runs")
    assert {status for (status,) in undone} == {"rolled_back"}


@pytest.mark.timeout(600)
def test_every_run_acknowledged_just_before_a_kill_9_exists_after_the_restart(
    tmp_path: Path,
) -> None:
    database, ledger, port = tmp_path / "s.db", tmp_path / "ledger.txt", free_port()
    acknowledged: list[str] = []
    for _ in range(ACKNOWLEDGE_ITERATIONS):
        with server(database, port) as process:
            acknowledged += start_runs(port, ledger, 1, step_seconds=0.0)
            process.send_signal(signal.SIGKILL)
            process.wait(10)

    stored = {run_id for (run_id,) in rows(database, "SELECT id FROM runs")}
    assert len(acknowledged) == ACKNOWLEDGE_ITERATIONS
    assert set(acknowledged) <= stored


def test_a_run_that_kills_its_process_every_time_ends_failed_and_others_complete(
    tmp_path: Path,
) -> None:
    database, ledger, port = tmp_path / "s.db", tmp_path / "ledger.txt", free_port()
    restarts = 0
    with server(database, port) as process:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            doomed = client.post("/runs", json={"pipeline": "suicide"}).json()["id"]
        process.wait(START_SECONDS)  # its step kills it
    others: list[str] = []
    gave_up = False
    while not gave_up:
        assert restarts <= MAX_RECOVERIES, "the run crash-loops the service"
        restarts += 1
        with server(database, port, die_ok=True) as process:
            with contextlib.suppress(httpx.TransportError):
                others += start_runs(port, ledger, 2, step_seconds=0.0)
            # Recovery resumes the run, which kills the process again, until it gives up.
            gave_up = failed_or_dead(port, doomed)
    with server(database, port):
        others += start_runs(port, ledger, 2, step_seconds=0.0)
        wait_all_terminal(port, [doomed, *others])
        run = httpx.get(f"http://127.0.0.1:{port}/runs/{doomed}", timeout=10).json()

    assert run["error"]["type"] == "RecoveryExhausted"
    assert restarts == MAX_RECOVERIES + 1
    statuses = dict(rows(database, "SELECT id, status FROM runs"))
    assert statuses[doomed] == "failed"
    assert {statuses[run_id] for run_id in others} == {"succeeded"}
    attempts = rows(database, "SELECT count(*) FROM events WHERE run_id = ? AND type = ?",
                    doomed, "run.recovered")  # fmt: skip
    assert attempts[0][0] == MAX_RECOVERIES
