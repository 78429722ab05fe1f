"""An event stream followed across a server restart: the iterator reconnects with
``Last-Event-ID`` and sends each event once."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from stepline_client import AsyncClient, Client, RetryPolicy
from tests.app.processes import free_port, stepline_serve

from .conftest import PIPELINES, WAIT

pytestmark = pytest.mark.slow

ENV = {
    "STEPLINE_PIPELINES": PIPELINES,
    "STEPLINE_LEASE_SECONDS": "2",
    "STEPLINE_POLL_SECONDS": "0.1",
}


def test_events_resume_across_a_restart_without_duplicates(tmp_path: Path) -> None:
    database, port, gate = tmp_path / "stepline.db", free_port(), tmp_path / "gate"
    retry = RetryPolicy(max_attempts=8, initial_delay=0.05, max_delay=0.5)
    with Client(f"http://127.0.0.1:{port}", retry=retry) as client:
        with stepline_serve(database, port, ENV) as process:
            run = client.runs.create("file_gate", params={"gate": str(gate)})
            events = client.runs.events(run.id, timeout=WAIT)
            seen = []
            for event in events:
                seen.append(event)
                if event.type == "step.started" and event.data.get("step") == "b":
                    break
            process.kill()
            process.wait(10)
        # The iterator is not read while the server is down: its next read finds the old
        # connection gone and reconnects to the new process.
        with stepline_serve(database, port, ENV):
            gate.touch()
            seen.extend(events)
            final = client.runs.get(run.id)

    numbers = [e.seq or 0 for e in seen]
    assert seen[0].type == "run.snapshot"
    assert None not in [e.seq for e in seen]
    assert numbers == sorted(set(numbers))
    assert seen[-1].terminal
    assert seen[-1].data["status"] == final.status
    assert final.finished


@pytest.mark.anyio
async def test_async_events_resume_across_a_restart_without_duplicates(tmp_path: Path) -> None:
    database, port, gate = tmp_path / "stepline.db", free_port(), tmp_path / "gate"
    retry = RetryPolicy(max_attempts=8, initial_delay=0.05, max_delay=0.5)
    async with AsyncClient(f"http://127.0.0.1:{port}", retry=retry) as client:
        with stepline_serve(database, port, ENV) as process:
            run = await client.runs.create("file_gate", params={"gate": str(gate)})
            events = aiter(client.runs.events(run.id))
            seen = []
            async for event in events:
                seen.append(event)
                if event.type == "step.started" and event.data.get("step") == "b":
                    break
            process.kill()
            process.wait(10)
        with stepline_serve(database, port, ENV):
            gate.touch()
            with anyio.fail_after(WAIT):
                seen.extend([event async for event in events])
            final = await client.runs.get(run.id)

    numbers = [e.seq or 0 for e in seen]
    assert seen[0].type == "run.snapshot"
    assert None not in [e.seq for e in seen]
    assert numbers == sorted(set(numbers))
    assert seen[-1].terminal
    assert final.finished
