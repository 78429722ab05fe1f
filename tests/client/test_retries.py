"""Retries of ``runs.create``, against a scripted transport: one key for every try."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from stepline_client import Client, RetryPolicy, TooManyRequests, Unavailable

NOW = datetime(2026, 1, 1, tzinfo=UTC).isoformat()
RUN: dict[str, Any] = {
    "id": "r1",
    "pipeline": "p",
    "status": "queued",
    "progress": 0,
    "params": {},
    "labels": {},
    "created_at": NOW,
    "updated_at": NOW,
    "cancel_requested": False,
    "last_event_id": 1,
    "steps": [],
    "added_by_a_newer_server": True,
}
NO_WAIT = RetryPolicy(max_attempts=3, initial_delay=0, max_delay=0)


def scripted(answers: list[httpx.Response | Exception], seen: list[httpx.Request]) -> Client:
    replies: Iterator[httpx.Response | Exception] = iter(answers)

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        reply = next(replies)
        if isinstance(reply, Exception):
            raise reply
        return reply

    return Client("http://stepline.test", retry=NO_WAIT, transport=httpx.MockTransport(handle))


def problem(status: int, **headers: str) -> httpx.Response:
    body = {"type": "about:blank", "title": "busy", "status": status}
    return httpx.Response(status, json=body, headers=headers)


def test_connect_errors_and_busy_answers_are_retried_with_the_same_key() -> None:
    seen: list[httpx.Request] = []
    client = scripted(
        [
            httpx.ConnectError("refused"),
            problem(503),
            problem(429, **{"Retry-After": "0"}),
            httpx.Response(202, json=RUN),
        ],
        seen,
    )
    client.retry = RetryPolicy(max_attempts=4, initial_delay=0, max_delay=0)

    run = client.runs.create("p")

    keys = {request.headers["Idempotency-Key"] for request in seen}
    assert len(seen) == 4
    assert len(keys) == 1
    assert run.id == "r1"
    assert run.model_extra == {"added_by_a_newer_server": True}


def test_a_given_key_is_sent_as_is() -> None:
    seen: list[httpx.Request] = []
    scripted([httpx.Response(200, json=RUN)], seen).runs.create("p", idempotency_key="k-1")

    assert seen[0].headers["Idempotency-Key"] == "k-1"


def test_attempts_are_bounded() -> None:
    seen: list[httpx.Request] = []
    client = scripted([problem(503, **{"Retry-After": "0"})] * 3, seen)

    with pytest.raises(Unavailable) as raised:
        client.runs.create("p")

    assert len(seen) == 3
    assert raised.value.retry_after == 0
    assert raised.value.problem["title"] == "busy"


def test_a_429_without_retry_after_is_not_retried() -> None:
    seen: list[httpx.Request] = []

    with pytest.raises(TooManyRequests):
        scripted([problem(429)], seen).runs.create("p")

    assert len(seen) == 1
