"""The in-process bus: what a subscriber takes at once, and the end of delivery."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from app.runs.bus import EventBus
from app.store.records import EventRow

pytestmark = pytest.mark.anyio

WAIT = 5.0


def event(seq: int, run_id: str = "r1") -> EventRow:
    return EventRow(seq, run_id, seq, "step.started", "p", datetime.now(UTC), {})


async def test_events_delivered_together_are_taken_together_in_order() -> None:
    bus = EventBus()
    async with bus.subscribe("r1") as subscription:
        for seq in (1, 2, 3):
            bus.publish(event(seq))
        bus.publish(event(9, run_id="r2"))  # another run's: not this subscription's
        async with asyncio.timeout(WAIT):
            ready = await subscription.get_ready()
        assert [e.seq if e else None for e in ready] == [1, 2, 3]
        bus.publish(event(4))
        bus.close()
        async with asyncio.timeout(WAIT):
            ready = await subscription.get_ready()
        assert [e.seq if e else None for e in ready] == [4, None]


async def test_taking_waits_for_the_first_event() -> None:
    bus = EventBus()
    async with bus.subscribe(None) as subscription:
        waiting = asyncio.ensure_future(subscription.get_ready())
        await asyncio.sleep(0)  # let it start waiting: nothing is there yet
        assert not waiting.done()
        bus.publish(event(1, run_id="any"))
        async with asyncio.timeout(WAIT):
            assert [e.seq if e else None for e in await waiting] == [1]
