"""A stale owner: the Ray worker executing a run is stopped (SIGSTOP) past the run's lease;
the run is taken over and carried on by another worker; the stopped one is continued
(SIGCONT) while the new one executes the same step: the stale worker writes nothing more.

Every row written for the run is recorded by a trigger, with the epoch and owner of the run
at that moment and the process that wrote it: the store's connections are named after
their process (``stepline <pid>@<host>``), so the database itself says who wrote what.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from app.store.postgres import application_name
from tests.app.conftest import services_of
from tests.databases import execute

from .conftest import (
    LEASE_SECONDS,
    WAIT,
    run_epoch,
    wait_for_log,
    wait_for_run,
    wait_until_finished,
)  # fmt: skip

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

SWEEP_SECONDS = LEASE_SECONDS / 3  # how often the reconciler looks for orphans
SLACK_SECONDS = 2.0  # a busy machine's scheduling delays

AUDIT = [
    "CREATE TABLE writes (n bigserial PRIMARY KEY, tbl text NOT NULL, run_id text NOT NULL, "
    "epoch int NOT NULL, owner text, seq int, who text NOT NULL)",
    """CREATE FUNCTION record_write() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        run runs%ROWTYPE;
    BEGIN
        IF TG_TABLE_NAME = 'runs' THEN
            run := NEW;
        ELSE
            SELECT * INTO run FROM runs WHERE id = NEW.run_id;
        END IF;
        INSERT INTO writes (tbl, run_id, epoch, owner, seq, who)
        VALUES (TG_TABLE_NAME, run.id, run.epoch, run.owner, run.last_seq,
                current_setting('application_name'));
        RETURN NULL;
    END $$""",
    *(
        f"CREATE TRIGGER record_write AFTER INSERT OR UPDATE ON {table} "
        "FOR EACH ROW EXECUTE FUNCTION record_write()"
        for table in ("runs", "step_runs", "events")
    ),
]


def writer(pid: int) -> str:
    """How the writes of process ``pid`` are named (on this machine)."""
    return application_name().replace(f" {os.getpid()}@", f" {pid}@")


async def test_a_worker_stopped_past_its_lease_writes_nothing_after_the_run_is_taken_over(
    app: FastAPI, client: httpx.AsyncClient, store_url: str, tmp_path: Path
) -> None:
    for statement in AUDIT:  # the app has migrated the database: the tables are there
        execute(store_url, statement)
    release = tmp_path / "release"
    body = {"pipeline": "stall", "params": {"release": str(release)}}
    run_id = (await client.post("/runs", json=body)).json()["id"]
    stale = int((await wait_for_log(client, run_id))["pid"])
    assert stale != os.getpid()

    os.kill(stale, signal.SIGSTOP)
    try:
        stopped = time.monotonic()
        await wait_for_run(client, run_id, lambda _run: run_epoch(store_url, run_id) > 1)
        taken_over = time.monotonic() - stopped
        # The new owner's worker executes the step the stale one is stuck in...
        fresh = int((await wait_for_log(client, run_id, nth=2))["pid"])
        release.touch()  # ...and both may finish it: the stale one as soon as it continues.
    finally:
        os.kill(stale, signal.SIGCONT)
    run = await wait_until_finished(client, run_id)
    # Every task of the run has ended, the stale one's too: it has done all it will.
    await services_of(app).runs.workers.drain(WAIT)

    writes = execute(
        store_url,
        f"SELECT tbl, epoch, owner, who FROM writes WHERE run_id = '{run_id}' ORDER BY n",
    )
    takeover = next(i for i, (tbl, epoch, *_) in enumerate(writes) if epoch == 2)
    before, after = writes[:takeover], writes[takeover:]
    _tbl, _epoch, new_owner, _who = writes[takeover]
    events = execute(
        store_url, f"SELECT seq, type FROM events WHERE run_id = '{run_id}' ORDER BY seq"
    )

    assert taken_over < LEASE_SECONDS + SWEEP_SECONDS + SLACK_SECONDS
    assert fresh not in (stale, os.getpid())
    assert run["status"] == "succeeded", run
    assert writer(stale) in {who for _tbl, _epoch, _owner, who in before}
    assert writer(stale) not in {who for _tbl, _epoch, _owner, who in after}
    assert {epoch for _tbl, epoch, _owner, _who in after} == {2}
    assert {(owner, who) for tbl, _epoch, owner, who in after if tbl != "runs"} == {
        (new_owner, writer(fresh))
    }
    assert [seq for seq, _type in events] == list(range(1, len(events) + 1))
    assert [type_ for _seq, type_ in events] == [
        "run.queued", "run.started", "step.started", "step.succeeded", "step.started",
        "step.log", "run.recovered", "step.started", "step.log", "step.succeeded",
        "step.started", "step.succeeded", "run.succeeded",
    ]  # fmt: skip
    where = {name: data["pid"] for name, data in run["result"]["steps"].items()}
    assert where == {"prepare": stale, "stall": fresh, "finish": fresh}
