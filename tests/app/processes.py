"""Stepline servers in processes of their own, for tests that kill and restart them."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
START_SECONDS = 30.0  # a server process must listen within this
CONNECT_SECONDS = 0.5
RETRY_SECONDS = 0.05  # between attempts to connect, spent waiting on the process


class ServerExited(AssertionError):
    """The server process ended before it listened."""


def free_port() -> int:
    """A port nothing listens on now (the OS picks it; the server binds it moments later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_listening(
    process: subprocess.Popen[bytes], port: int, log: Path, within: float = START_SECONDS
) -> None:
    """Connect until the server accepts (uvicorn listens once its start-up is complete),
    it exits (``ServerExited``), or ``within`` seconds pass."""
    deadline = time.monotonic() + within
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=CONNECT_SECONDS):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"not listening on {port} after {within}s:\n{log.read_text()}"
                ) from None
        try:  # wait a little before the next attempt, noticing at once if the server died
            code = process.wait(timeout=RETRY_SECONDS)
        except subprocess.TimeoutExpired:
            continue
        raise ServerExited(f"the server exited with {code} before listening:\n{log.read_text()}")


@contextlib.contextmanager
def stepline_serve(
    database: Path,
    port: int,
    env: dict[str, str],
    *,
    die_ok: bool = False,
    start_seconds: float = START_SECONDS,
) -> Iterator[subprocess.Popen[bytes]]:
    """``stepline serve`` on ``database`` and ``port``, with the test pipelines and ``env``,
    listening within ``start_seconds``; killed if it outlives the block. With ``die_ok`` it
    may die while starting (a run it recovers kills it)."""
    log = database.with_name(f"server-{port}.log")
    settings = {
        "PYTHONPATH": str(ROOT),
        "STEPLINE_DATABASE_URL": f"sqlite+aiosqlite:///{database}",
        "STEPLINE_PIPELINES": "tests.app.pipelines",
        "STEPLINE_ENTRY_POINTS": "false",
        **env,
    }
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "app", "serve", "--port", str(port)],
            cwd=ROOT,  # a Ray driver: its Ray workers get this directory on their path too
            env={**os.environ, **settings},
            stdout=out,  # the access log
            stderr=out,
        )
        try:
            try:
                wait_until_listening(process, port, log, start_seconds)
            except ServerExited:
                if not die_ok:
                    raise
            yield process
        finally:
            if process.poll() is None:
                process.kill()
            process.wait(10)
