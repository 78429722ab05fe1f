"""``stepline serve`` as a process: a request must arrive within the deadline (a client
trickling its headers is cut off, others are served), and over the concurrency limit the
answer is a 503 problem."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.security.keys import KEY_PATTERN
from app.security.tokens import TOKEN_PATTERN
from tests.app.processes import free_port, stepline_serve

DEADLINE = 2.0
SLACK = 1.5  # the server's timer, the scheduler of a busy machine
BYTE_SECONDS = 1.0  # the slow client sends one byte a second
WAIT = 20.0
SLOW_REQUEST = b"GET /healthz HTTP/1.1\r\nHost: stepline\r\nX-Padding: " + b"x" * 40 + b"\r\n\r\n"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    port = free_port()
    env = {
        "STEPLINE_REQUEST_TIMEOUT_SECONDS": str(DEADLINE),
        "STEPLINE_LIMIT_CONCURRENCY": "4",
        "STEPLINE_SSE_PING_SECONDS": "0.5",
    }
    database = tmp_path / "stepline.db"
    with stepline_serve(database, port, env):
        yield f"http://127.0.0.1:{port}", database.with_name(f"server-{port}.log")


def test_a_client_sending_a_header_byte_a_second_is_cut_off_at_the_deadline(
    server: tuple[str, Path],
) -> None:
    base_url, log = server
    host, port = base_url.removeprefix("http://").split(":")
    sent = 0
    with socket.create_connection((host, int(port)), timeout=WAIT) as sock:
        started = time.monotonic()
        sock.settimeout(BYTE_SECONDS)  # the wait for the server to hang up paces the bytes
        closed = False
        while sent < len(SLOW_REQUEST) and not closed:
            try:
                sock.sendall(SLOW_REQUEST[sent : sent + 1])
                sent += 1
                closed = sock.recv(1024) == b""
                if not closed:
                    pytest.fail("the server answered a request it cannot have had whole")
            except TimeoutError:
                if sent == 2:  # meanwhile an ordinary client is served at once
                    assert httpx.get(f"{base_url}/healthz", timeout=WAIT).status_code == 200
            except (BrokenPipeError, ConnectionResetError):
                closed = True
        elapsed = time.monotonic() - started

    assert closed
    assert sent < len(SLOW_REQUEST)
    assert DEADLINE - 0.1 <= elapsed <= DEADLINE + SLACK
    assert "closed a connection that sent no whole request in 2s" in log.read_text()


def test_requests_and_streams_longer_than_the_deadline_are_not_cut(
    server: tuple[str, Path],
) -> None:
    base_url, _log = server
    with httpx.Client(base_url=base_url, timeout=WAIT) as client:
        with client.stream("GET", "/events") as stream:
            started = time.monotonic()
            lines = stream.iter_lines()
            while time.monotonic() - started < DEADLINE + SLACK:
                next(lines)  # pings every 0.5 s; the stream outlives the deadline
        # A kept-alive connection that sends its next request in time is served.
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").status_code == 200


def test_over_the_concurrency_limit_the_answer_is_a_503_problem(
    server: tuple[str, Path],
) -> None:
    base_url, log = server
    with (
        httpx.Client(base_url=base_url, timeout=WAIT) as first,
        httpx.Client(base_url=base_url, timeout=WAIT) as second,
        httpx.Client(base_url=base_url, timeout=WAIT) as third,
        first.stream("GET", "/events") as a,
        second.stream("GET", "/events") as b,
        third.stream("GET", "/events") as c,
    ):
        assert (a.status_code, b.status_code, c.status_code) == (200, 200, 200)
        refused = httpx.get(f"{base_url}/healthz", timeout=WAIT)

    assert refused.status_code == 503
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.headers["retry-after"] == "1"
    assert refused.json()["status"] == 503
    assert httpx.get(f"{base_url}/healthz", timeout=WAIT).status_code == 200
    text = log.read_text()
    assert "over the concurrency limit" in text
    assert KEY_PATTERN.findall(text) == TOKEN_PATTERN.findall(text) == []


def test_each_request_writes_one_access_line_as_uvicorn_does(server: tuple[str, Path]) -> None:
    base_url, log = server
    with httpx.Client(base_url=base_url, timeout=WAIT) as client:
        created = client.post("/runs", json={"pipeline": "controlled"})
        listed = client.get("/runs", params={"status": "queued"})
        missing = client.get("/runs/nope")
    assert (created.status_code, listed.status_code, missing.status_code) == (202, 200, 404)

    expected = [
        '"POST /runs HTTP/1.1" 202 Accepted',
        '"GET /runs?status=queued HTTP/1.1" 200 OK',
        '"GET /runs/nope HTTP/1.1" 404 Not Found',
    ]
    # Written and flushed as the response starts, so before the client has it.
    found = [line for line in log.read_text().splitlines() if any(e in line for e in expected)]
    assert [line.split(" - ", 1)[1] for line in found] == expected
    assert all(line.startswith("INFO:     127.0.0.1:") for line in found)
