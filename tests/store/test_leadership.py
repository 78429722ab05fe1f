"""One leader at a time among the replicas of a PostgreSQL database."""

from __future__ import annotations

import pytest

from app.store.leadership import Leadership
from tests.databases import execute

pytestmark = pytest.mark.anyio


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
