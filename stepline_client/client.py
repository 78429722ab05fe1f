"""Synchronous and asynchronous clients of the Stepline HTTP API."""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx

from .errors import error_for, retry_after
from .models import (
    Event,
    LogPage,
    Pipeline,
    Run,
    RunPage,
    StreamToken,
)
from .sse import SSEParser

__all__ = ["OPERATIONS", "AsyncClient", "Client", "RetryPolicy"]

# Every operationId of the HTTP contract and the client method that calls it: a test
# checks this against openapi.json, so a new route cannot go without a method.
OPERATIONS: dict[str, str] = {
    "list_pipelines": "pipelines.list",
    "get_pipeline": "pipelines.get",
    "create_run": "runs.create",
    "list_runs": "runs.list",
    "get_run": "runs.get",
    "cancel_run": "runs.cancel",
    "get_run_logs": "runs.logs",
    "stream_run_events": "runs.events",
    "create_run_stream_token": "runs.stream_token",
    "stream_events": "events.stream",
    "create_events_stream_token": "events.stream_token",
    "healthz": "healthz",
    "readyz": "readyz",
    "metrics": "metrics",
}

RETRY_STATUSES = frozenset({502, 503, 504})
# Pings keep an idle stream talking; this long a silence means the connection is dead.
STREAM_READ_SECONDS = 60.0


@dataclass(frozen=True)
class RetryPolicy:
    """At most ``max_attempts`` tries of one request (or consecutive failed reconnects of
    one stream), waiting ``initial_delay * 2**n`` (at most ``max_delay``) with full jitter
    in between, or what ``Retry-After`` asks."""

    max_attempts: int = 4
    initial_delay: float = 0.2
    max_delay: float = 5.0

    def delay(self, failures: int, asked: float | None = None) -> float:
        if asked is not None:
            return asked
        ceiling = min(self.max_delay, self.initial_delay * 2 ** max(0, failures - 1))
        # Jitter spreads clients that failed together so that they do not return together.
        return random.uniform(ceiling / 2, ceiling)


def _retryable(response: httpx.Response) -> bool:
    if response.status_code == 429:
        return retry_after(response) is not None
    return response.status_code in RETRY_STATUSES


def _event(parsed_type: str, parsed_id: str | None, data: str) -> Event:
    try:
        payload: Any = json.loads(data) if data else None
    except ValueError:
        payload = data
    return Event(type=parsed_type, id=parsed_id, data=payload)


def _ends_run_stream(event: Event) -> bool:
    return event.terminal


class _Dedup:
    """Remembers the last event id seen, to resume from and to drop replays by."""

    def __init__(self, last_event_id: int | str | None) -> None:
        self.last: str | None = None if last_event_id is None else str(last_event_id)
        self._seq: int | None = int(self.last) if self.last and self.last.isdigit() else None
        self._after_snapshot = False

    def headers(self) -> dict[str, str]:
        return {} if self.last is None else {"Last-Event-ID": self.last}

    def accept(self, event: Event) -> bool:
        seq = event.seq
        # A finished run's snapshot is followed by its terminal event, which the snapshot
        # already reflects (same id): it is sent so that a stream always ends on it.
        after_snapshot, self._after_snapshot = self._after_snapshot, event.type == "run.snapshot"
        if after_snapshot and event.terminal and seq is not None and seq == self._seq:
            return True
        if seq is not None and self._seq is not None and seq <= self._seq:
            return False
        if seq is not None:
            self._seq = seq
        self.last = event.id
        return True


def _create_body(
    pipeline: str, params: Mapping[str, Any] | None, labels: Mapping[str, str] | None
) -> dict[str, Any]:
    return {"pipeline": pipeline, "params": dict(params or {}), "labels": dict(labels or {})}


def _when(value: datetime | str | None) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else value


def _list_params(
    pipeline: str | None,
    status: str | None,
    labels: Mapping[str, str] | Sequence[str] | None,
    created_after: datetime | str | None,
    created_before: datetime | str | None,
    cursor: str | None,
    limit: int | None,
) -> dict[str, Any]:
    label = [f"{k}:{v}" for k, v in labels.items()] if isinstance(labels, Mapping) else labels
    params = {
        "pipeline": pipeline,
        "status": status,
        "label": list(label) if label else None,
        "created_after": _when(created_after),
        "created_before": _when(created_before),
        "cursor": cursor,
        "limit": limit,
    }
    return {k: v for k, v in params.items() if v is not None}


def _events_params(
    pipeline: str | Sequence[str] | None, types: str | Sequence[str] | None
) -> dict[str, Any]:
    params: dict[str, Any] = {}
    if pipeline:
        params["pipeline"] = pipeline if isinstance(pipeline, str) else list(pipeline)
    if types:
        params["type"] = types if isinstance(types, str) else list(types)
    return params


def _headers(api_key: str | None) -> dict[str, str]:
    headers = {"Accept": "application/json"}
    if api_key is not None:
        headers["Authorization"] = f"Bearer {api_key}"
    return headers


def _stream_timeout(timeout: float, deadline: float | None) -> httpx.Timeout:
    read = STREAM_READ_SECONDS
    if deadline is not None:
        read = max(0.01, min(read, deadline - time.monotonic()))
    return httpx.Timeout(timeout, read=read)


# --- synchronous -------------------------------------------------------------------------


class Client:
    """``Client("http://127.0.0.1:8000", api_key=...)``; use it as a context manager or
    ``close()`` it."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout: float = 10.0,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.http = httpx.Client(
            base_url=base_url, headers=_headers(api_key), timeout=timeout, transport=transport
        )
        self.pipelines = _Pipelines(self)
        self.runs = _Runs(self)
        self.events = _Events(self)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def healthz(self) -> dict[str, str]:
        return dict(self.request("GET", "/healthz").json())

    def readyz(self) -> dict[str, str]:
        """Raises ``Unavailable`` when the server is not ready."""
        return dict(self.request("GET", "/readyz", retry=False).json())

    def metrics(self) -> str:
        return self.request("GET", "/metrics").text

    def request(
        self, method: str, path: str, *, retry: bool = True, **kwargs: Any
    ) -> httpx.Response:
        """Send, retrying (when ``retry``) what failed before the server acted on it."""
        failures = 0
        while True:
            try:
                response = self.http.request(method, path, **kwargs)
            except (httpx.ConnectError, httpx.ConnectTimeout):
                failures += 1
                if failures >= self.retry.max_attempts:
                    raise
                time.sleep(self.retry.delay(failures))
                continue
            if response.is_success:
                return response
            failures += 1
            if retry and _retryable(response) and failures < self.retry.max_attempts:
                time.sleep(self.retry.delay(failures, retry_after(response)))
                continue
            raise error_for(response)

    def stream_events(
        self,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        last_event_id: int | str | None = None,
        ends_at_terminal: bool = False,
        deadline: float | None = None,
    ) -> Iterator[Event]:
        """The events of the stream at ``path``, resuming with ``Last-Event-ID`` whenever
        the connection ends, dropping events already seen.

        Reconnects wait as ``retry`` says, not as the server's ``retry:`` hint, which is
        sized for browsers that reconnect forever."""
        seen = _Dedup(last_event_id)
        failures = 0
        while True:
            try:
                with self.http.stream(
                    "GET",
                    path,
                    params=params,
                    headers={**seen.headers(), "Accept": "text/event-stream"},
                    timeout=_stream_timeout(self.timeout, deadline),
                ) as response:
                    if response.status_code == 204:
                        return
                    if not response.is_success:
                        response.read()
                        if not _retryable(response) or failures + 1 >= self.retry.max_attempts:
                            raise error_for(response)
                        failures += 1
                        time.sleep(self.retry.delay(failures, retry_after(response)))
                        continue
                    parser = SSEParser()
                    for line in response.iter_lines():
                        if deadline is not None and time.monotonic() > deadline:
                            raise TimeoutError("the stream did not end in time")
                        sse = parser.feed(line)
                        # An event without an id (stream.closing) is a notice, not history.
                        if sse is None or sse.id is None:
                            continue
                        event = _event(sse.event, sse.id, sse.data)
                        if not seen.accept(event):
                            continue
                        failures = 0
                        yield event
                        if ends_at_terminal and _ends_run_stream(event):
                            return
            except (httpx.TransportError, httpx.RemoteProtocolError):
                pass
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError("the stream did not end in time")
            failures += 1
            if failures >= self.retry.max_attempts:
                raise httpx.ConnectError(f"{path}: gave up after {failures} reconnects")
            time.sleep(self.retry.delay(failures))


class _Pipelines:
    def __init__(self, client: Client) -> None:
        self._client = client

    def list(self) -> list[Pipeline]:
        body = self._client.request("GET", "/pipelines").json()
        return [Pipeline.model_validate(item) for item in body["items"]]

    def get(self, name: str) -> Pipeline:
        return Pipeline.model_validate(self._client.request("GET", f"/pipelines/{name}").json())


class _Runs:
    def __init__(self, client: Client) -> None:
        self._client = client

    def create(
        self,
        pipeline: str,
        params: Mapping[str, Any] | None = None,
        labels: Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
    ) -> Run:
        """Start a run. Every try sends the same ``Idempotency-Key`` (a new uuid4 unless
        given), so a retry after a lost answer cannot start a second run."""
        key = idempotency_key or str(uuid.uuid4())
        response = self._client.request(
            "POST",
            "/runs",
            json=_create_body(pipeline, params, labels),
            headers={"Idempotency-Key": key},
        )
        return Run.model_validate(response.json())

    def list(
        self,
        *,
        pipeline: str | None = None,
        status: str | None = None,
        labels: Mapping[str, str] | Sequence[str] | None = None,
        created_after: datetime | str | None = None,
        created_before: datetime | str | None = None,
        cursor: str | None = None,
        limit: int | None = None,
    ) -> RunPage:
        params = _list_params(
            pipeline, status, labels, created_after, created_before, cursor, limit
        )
        return RunPage.model_validate(self._client.request("GET", "/runs", params=params).json())

    def get(self, run_id: str) -> Run:
        return Run.model_validate(self._client.request("GET", f"/runs/{run_id}").json())

    def cancel(self, run_id: str, rollback: bool = True) -> Run:
        response = self._client.request(
            "POST", f"/runs/{run_id}/cancel", json={"rollback": rollback}, retry=False
        )
        return Run.model_validate(response.json())

    def logs(
        self,
        run_id: str,
        *,
        step: str | None = None,
        after: int | None = None,
        limit: int | None = None,
    ) -> LogPage:
        params = {
            k: v for k, v in {"step": step, "after": after, "limit": limit}.items() if v is not None
        }
        response = self._client.request("GET", f"/runs/{run_id}/logs", params=params)
        return LogPage.model_validate(response.json())

    def stream_token(self, run_id: str) -> StreamToken:
        response = self._client.request("POST", f"/runs/{run_id}/stream-token")
        return StreamToken.model_validate(response.json())

    def events(
        self, run_id: str, last_event_id: int | str | None = None, *, timeout: float | None = None
    ) -> Iterator[Event]:
        """The run's events (first a ``run.snapshot`` unless resuming), up to and including
        the terminal one."""
        deadline = None if timeout is None else time.monotonic() + timeout
        return self._client.stream_events(
            f"/runs/{run_id}/events",
            last_event_id=last_event_id,
            ends_at_terminal=True,
            deadline=deadline,
        )

    def wait(self, run_id: str, timeout: float | None = None) -> Run:
        """Follow the run's events until it has finished and return it (``TimeoutError``
        after ``timeout`` seconds)."""
        for _ in self.events(run_id, timeout=timeout):
            pass
        return self.get(run_id)


class _Events:
    def __init__(self, client: Client) -> None:
        self._client = client

    def stream(
        self,
        *,
        pipeline: str | Sequence[str] | None = None,
        types: str | Sequence[str] | None = None,
        last_event_id: int | str | None = None,
    ) -> Iterator[Event]:
        """Every run's events (``id`` is global), for as long as it is iterated."""
        return self._client.stream_events(
            "/events", params=_events_params(pipeline, types), last_event_id=last_event_id
        )

    def stream_token(self) -> StreamToken:
        response = self._client.request("POST", "/events/stream-token")
        return StreamToken.model_validate(response.json())


# --- asynchronous ------------------------------------------------------------------------


class AsyncClient:
    """The ``Client`` API with ``await`` (and ``async for`` over event streams)."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout: float = 10.0,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.http = httpx.AsyncClient(
            base_url=base_url, headers=_headers(api_key), timeout=timeout, transport=transport
        )
        self.pipelines = _AsyncPipelines(self)
        self.runs = _AsyncRuns(self)
        self.events = _AsyncEvents(self)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self.http.aclose()

    async def healthz(self) -> dict[str, str]:
        return dict((await self.request("GET", "/healthz")).json())

    async def readyz(self) -> dict[str, str]:
        """Raises ``Unavailable`` when the server is not ready."""
        return dict((await self.request("GET", "/readyz", retry=False)).json())

    async def metrics(self) -> str:
        return (await self.request("GET", "/metrics")).text

    async def request(
        self, method: str, path: str, *, retry: bool = True, **kwargs: Any
    ) -> httpx.Response:
        """Send, retrying (when ``retry``) what failed before the server acted on it."""
        failures = 0
        while True:
            try:
                response = await self.http.request(method, path, **kwargs)
            except (httpx.ConnectError, httpx.ConnectTimeout):
                failures += 1
                if failures >= self.retry.max_attempts:
                    raise
                await asyncio.sleep(self.retry.delay(failures))
                continue
            if response.is_success:
                return response
            failures += 1
            if retry and _retryable(response) and failures < self.retry.max_attempts:
                await asyncio.sleep(self.retry.delay(failures, retry_after(response)))
                continue
            raise error_for(response)

    async def stream_events(
        self,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        last_event_id: int | str | None = None,
        ends_at_terminal: bool = False,
    ) -> AsyncIterator[Event]:
        """The events of the stream at ``path``, resuming with ``Last-Event-ID`` whenever
        the connection ends, dropping events already seen."""
        seen = _Dedup(last_event_id)
        failures = 0
        while True:
            try:
                async with self.http.stream(
                    "GET",
                    path,
                    params=params,
                    headers={**seen.headers(), "Accept": "text/event-stream"},
                    timeout=_stream_timeout(self.timeout, None),
                ) as response:
                    if response.status_code == 204:
                        return
                    if not response.is_success:
                        await response.aread()
                        if not _retryable(response) or failures + 1 >= self.retry.max_attempts:
                            raise error_for(response)
                        failures += 1
                        await asyncio.sleep(self.retry.delay(failures, retry_after(response)))
                        continue
                    parser = SSEParser()
                    async for line in response.aiter_lines():
                        sse = parser.feed(line)
                        # An event without an id (stream.closing) is a notice, not history.
                        if sse is None or sse.id is None:
                            continue
                        event = _event(sse.event, sse.id, sse.data)
                        if not seen.accept(event):
                            continue
                        failures = 0
                        yield event
                        if ends_at_terminal and _ends_run_stream(event):
                            return
            except (httpx.TransportError, httpx.RemoteProtocolError):
                pass
            failures += 1
            if failures >= self.retry.max_attempts:
                raise httpx.ConnectError(f"{path}: gave up after {failures} reconnects")
            await asyncio.sleep(self.retry.delay(failures))


class _AsyncPipelines:
    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def list(self) -> list[Pipeline]:
        body = (await self._client.request("GET", "/pipelines")).json()
        return [Pipeline.model_validate(item) for item in body["items"]]

    async def get(self, name: str) -> Pipeline:
        response = await self._client.request("GET", f"/pipelines/{name}")
        return Pipeline.model_validate(response.json())


class _AsyncRuns:
    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def create(
        self,
        pipeline: str,
        params: Mapping[str, Any] | None = None,
        labels: Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
    ) -> Run:
        """Start a run. Every try sends the same ``Idempotency-Key`` (a new uuid4 unless
        given), so a retry after a lost answer cannot start a second run."""
        key = idempotency_key or str(uuid.uuid4())
        response = await self._client.request(
            "POST",
            "/runs",
            json=_create_body(pipeline, params, labels),
            headers={"Idempotency-Key": key},
        )
        return Run.model_validate(response.json())

    async def list(
        self,
        *,
        pipeline: str | None = None,
        status: str | None = None,
        labels: Mapping[str, str] | Sequence[str] | None = None,
        created_after: datetime | str | None = None,
        created_before: datetime | str | None = None,
        cursor: str | None = None,
        limit: int | None = None,
    ) -> RunPage:
        params = _list_params(
            pipeline, status, labels, created_after, created_before, cursor, limit
        )
        response = await self._client.request("GET", "/runs", params=params)
        return RunPage.model_validate(response.json())

    async def get(self, run_id: str) -> Run:
        return Run.model_validate((await self._client.request("GET", f"/runs/{run_id}")).json())

    async def cancel(self, run_id: str, rollback: bool = True) -> Run:
        response = await self._client.request(
            "POST", f"/runs/{run_id}/cancel", json={"rollback": rollback}, retry=False
        )
        return Run.model_validate(response.json())

    async def logs(
        self,
        run_id: str,
        *,
        step: str | None = None,
        after: int | None = None,
        limit: int | None = None,
    ) -> LogPage:
        params = {
            k: v for k, v in {"step": step, "after": after, "limit": limit}.items() if v is not None
        }
        response = await self._client.request("GET", f"/runs/{run_id}/logs", params=params)
        return LogPage.model_validate(response.json())

    async def stream_token(self, run_id: str) -> StreamToken:
        response = await self._client.request("POST", f"/runs/{run_id}/stream-token")
        return StreamToken.model_validate(response.json())

    def events(self, run_id: str, last_event_id: int | str | None = None) -> AsyncIterator[Event]:
        """The run's events (first a ``run.snapshot`` unless resuming), up to and including
        the terminal one."""
        return self._client.stream_events(
            f"/runs/{run_id}/events", last_event_id=last_event_id, ends_at_terminal=True
        )

    # The same signature as Client.runs.wait, so code moves between the two unchanged.
    async def wait(self, run_id: str, timeout: float | None = None) -> Run:  # noqa: ASYNC109
        """Follow the run's events until it has finished and return it (``TimeoutError``
        after ``timeout`` seconds)."""
        async with asyncio.timeout(timeout):
            async for _ in self.events(run_id):
                pass
            return await self.get(run_id)


class _AsyncEvents:
    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    def stream(
        self,
        *,
        pipeline: str | Sequence[str] | None = None,
        types: str | Sequence[str] | None = None,
        last_event_id: int | str | None = None,
    ) -> AsyncIterator[Event]:
        """Every run's events (``id`` is global), for as long as it is iterated."""
        return self._client.stream_events(
            "/events", params=_events_params(pipeline, types), last_event_id=last_event_id
        )

    async def stream_token(self) -> StreamToken:
        response = await self._client.request("POST", "/events/stream-token")
        return StreamToken.model_validate(response.json())
