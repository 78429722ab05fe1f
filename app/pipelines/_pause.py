"""Waiting inside a demo step in a way that a cancel interrupts at once."""

from __future__ import annotations

import asyncio

from steps import BaseStepContext

__all__ = ["pause", "pause_async"]


def pause(context: BaseStepContext, seconds: float) -> None:
    """Sleep up to ``seconds``; raise ``Cancelled`` as soon as the run is cancelled."""
    context.cancellation.wait(seconds)
    context.check_cancelled()


async def pause_async(seconds: float) -> None:
    """Sleep ``seconds`` on the loop; a cancel arrives as cancellation of this await."""
    await asyncio.sleep(seconds)
