"""``stepline`` as a process against a real ``stepline serve``, shared by the package's tests."""

from __future__ import annotations

import os
import queue
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from stepline_client import Client, Event
from tests.app.processes import ROOT, free_port, stepline_serve

PIPELINES = "tests.app.pipelines,tests.app.pipelines:FileGateAction"
WAIT = 30.0  # seconds any test waits for a command, a line or a run
STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"
PLAIN_LINE = re.compile(rf"^({STAMP})  (\S+) (.*)$")
SGR = re.compile(r"\x1b\[[0-9;]*m")  # a colour or style escape
# What the environment of the test run could add to the command's output.
UNSET = ("NO_COLOR", "FORCE_COLOR", "COLUMNS", "LINES", "STEPLINE_API_KEY", "TERM")


def command_env(url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in UNSET}
    return {**env, "PYTHONPATH": str(ROOT), "STEPLINE_URL": url, "PYTHONIOENCODING": "utf-8",
            **extra}  # fmt: skip


def stepline_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "app.cli", *args]


@dataclass
class Lines:
    """The lines a process writes to one of its pipes, read by a thread as they come."""

    seen: list[str] = field(default_factory=list)
    _queue: queue.Queue[str | None] = field(default_factory=queue.Queue)

    def read(self, pipe: object) -> None:
        for line in pipe:  # type: ignore[attr-defined]
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, pattern: str) -> re.Match[str]:
        """The first line from now on matching ``pattern``; fails after ``WAIT`` seconds."""
        while True:
            try:
                line = self._queue.get(timeout=WAIT)
            except queue.Empty:
                raise AssertionError(f"no line matched {pattern!r}: {self.seen}") from None
            if line is None:
                raise AssertionError(f"the output ended before {pattern!r}: {self.seen}")
            self.seen.append(line)
            found = re.search(pattern, line)
            if found:
                return found

    def rest(self) -> list[str]:
        """Every line after those seen, once the pipe has closed."""
        while (line := self._queue.get(timeout=WAIT)) is not None:
            self.seen.append(line)
        return self.seen


@dataclass
class Running:
    """A ``stepline`` process in the background, its stdout and stderr read as they come."""

    process: subprocess.Popen[str]
    out: Lines
    err: Lines

    def wait(self) -> int:
        code = self.process.wait(timeout=WAIT)
        self.out.rest()
        self.err.rest()
        return code

    def __enter__(self) -> Running:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=WAIT)
        for pipe in (self.process.stdout, self.process.stderr):
            if pipe is not None:
                pipe.close()


@dataclass
class Stepline:
    """Runs the command against the server at ``url``."""

    url: str

    def __call__(
        self, *args: str, env: dict[str, str] | None = None, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            stepline_command(*args),
            input=stdin,
            capture_output=True,
            text=True,
            encoding="utf-8",
            timeout=WAIT,
            env=command_env(self.url, **(env or {})),
            cwd=ROOT,
        )

    def start(self, *args: str) -> Running:
        process = subprocess.Popen(
            stepline_command(*args),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            env=command_env(self.url),
            cwd=ROOT,
        )
        out, err = Lines(), Lines()
        for lines, pipe in ((out, process.stdout), (err, process.stderr)):
            threading.Thread(target=lines.read, args=(pipe,), daemon=True).start()
        return Running(process, out, err)


@pytest.fixture(scope="package")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    database = tmp_path_factory.mktemp("cli") / "stepline.db"
    port = free_port()
    with stepline_serve(database, port, {"STEPLINE_PIPELINES": PIPELINES}):
        yield f"http://127.0.0.1:{port}"


@pytest.fixture
def stepline(base_url: str) -> Stepline:
    return Stepline(base_url)


@pytest.fixture
def client(base_url: str) -> Iterator[Client]:
    with Client(base_url, timeout=WAIT) as api:
        yield api


def wait_for_event(client: Client, run_id: str, kind: str, step: str | None = None) -> Event:
    """Follow the run's events until one of type ``kind`` (about ``step``) arrives."""
    for event in client.runs.events(run_id, timeout=WAIT):
        data = event.data if isinstance(event.data, dict) else {}
        if event.type == kind and step in (None, data.get("step")):
            return event
        if event.type == "run.snapshot" and kind == "step.started":
            running = [s["name"] for s in data.get("steps", []) if s["status"] == "running"]
            if step in running:
                return event
    raise AssertionError(f"run {run_id} ended without {kind} {step or ''}")


def plain_lines(text: str) -> list[tuple[str, str]]:
    """``(glyph, rest)`` of every timestamped line of plain follow output."""
    return [(m.group(2), m.group(3)) for line in text.splitlines() if (m := PLAIN_LINE.match(line))]
