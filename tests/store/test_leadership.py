"""One leader at a time among the replicas of a PostgreSQL database."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import pytest

from app.store.leadership import Leadership
from tests.databases import execute

pytestmark = pytest.mark.anyio

WAIT = 10.0  # seconds a test waits for what it expects


async def test_one_replica_leads_until_it_steps_down_then_another_does(postgres_url: str) -> None:
    first, second = Leadership(postgres_url), Leadership(postgres_url)
    try:
        assert await first.lead()
        assert not await second.lead()
        assert await first.lead()  # still held

        await first.close()

        assert await second.lead()
        assert not await first.lead()
    finally:
        await first.close()
        await second.close()


async def test_a_leader_whose_connection_is_cut_loses_the_lead(postgres_url: str) -> None:
    first, second = Leadership(postgres_url), Leadership(postgres_url)
    try:
        assert await first.lead()
        database = postgres_url.rsplit("/", 1)[1]
        execute(
            postgres_url,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE datname = '{database}' AND pid <> pg_backend_pid()",
        )

        assert await second.lead()
        assert not await first.lead()  # its connection, and the lock with it, are gone
    finally:
        await first.close()
        await second.close()


LEADER = """
import asyncio, sys
from app.store.leadership import Leadership

async def main() -> None:
    leadership = Leadership(sys.argv[1], idle_timeout=float(sys.argv[2]))
    assert await leadership.lead()
    print("leading", flush=True)
    while True:  # a live leader checks its lead well within the idle timeout
        await asyncio.sleep(0.1)
        print("leading" if await leadership.lead() else "lost", flush=True)

asyncio.run(main())
"""


@pytest.mark.slow
async def test_a_frozen_leader_loses_the_lead_to_the_databases_idle_timeout(
    postgres_url: str,
) -> None:
    idle_timeout = 1.0
    leader = await asyncio.create_subprocess_exec(
        *[sys.executable, "-c", LEADER, postgres_url, str(idle_timeout)],
        stdout=asyncio.subprocess.PIPE,
        cwd=Path(__file__).parents[2],
    )
    assert leader.stdout is not None
    second = Leadership(postgres_url, idle_timeout=idle_timeout)
    try:
        async with asyncio.timeout(WAIT):
            assert await leader.stdout.readline() == b"leading\n"
        assert not await second.lead()

        leader.send_signal(signal.SIGSTOP)  # frozen: its connection stays open
        async with asyncio.timeout(idle_timeout + WAIT):
            while True:  # no event tells of the lock's release: ask for it
                if await second.lead():
                    break
                await asyncio.sleep(0.1)
        leader.send_signal(signal.SIGCONT)

        async with asyncio.timeout(WAIT):
            while (line := await leader.stdout.readline()) == b"leading\n":
                pass  # written before the freeze
        assert line == b"lost\n"  # its first check after the freeze finds its session gone
        assert await second.lead()
    finally:
        leader.kill()
        await leader.wait()
        await second.close()
