"""``stepline`` in a pseudo-terminal: following redraws in place, and ``NO_COLOR`` and
``TERM=dumb`` are honoured."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import termios
import time

from stepline_client import Client
from tests.app.processes import ROOT

from .conftest import SGR, WAIT, command_env, stepline_command

COLUMNS, ROWS = 120, 40
CURSOR_UP = "\x1b[1A"


def in_terminal(url: str, *args: str, **env: str) -> tuple[int, str]:
    """Run ``stepline *args`` with a terminal as its stdin, stdout and stderr; its exit
    code and everything it wrote."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))
    process = subprocess.Popen(
        stepline_command(*args),
        stdin=follower, stdout=follower, stderr=follower,
        env=command_env(url, **{"TERM": "xterm-256color", **env}), cwd=ROOT, close_fds=True,
    )  # fmt: skip
    os.close(follower)
    written = bytearray()
    deadline = time.monotonic() + WAIT
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], deadline - time.monotonic())
            if not ready:
                break
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the process closed the terminal
                break
            if not chunk:
                break
            written += chunk
        code = process.wait(timeout=WAIT)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(leader)
    return code, written.decode("utf-8")


def test_following_on_a_terminal_redraws_in_colour_and_ends_with_the_report(
    base_url: str, client: Client
) -> None:
    code, text = in_terminal(base_url, "run", "controlled", "-p", "fail_at=c", "-f")

    assert code == 1
    assert SGR.search(text)  # colour, as the terminal can show it
    assert CURSOR_UP in text  # redrawn in place, not a line per transition
    assert not re.search(r"^\d{4}-\d\d-\d\dT", text, re.M)
    assert "↺ rollback, newest first" in text
    assert "✗ failed at step 'c'" in text


def test_no_color_writes_no_colour_or_style_even_on_a_terminal(
    base_url: str, client: Client
) -> None:
    run_id = client.runs.create("controlled", {"fail_at": "b"}).id
    client.runs.wait(run_id, timeout=WAIT)

    shown_code, shown = in_terminal(base_url, "show", run_id, NO_COLOR="1")
    listed_code, listed = in_terminal(base_url, "runs", "--limit", "3", NO_COLOR="1")
    follow_code, followed = in_terminal(base_url, "run", "controlled", "-f", NO_COLOR="1")
    coloured_code, coloured = in_terminal(base_url, "show", run_id)

    assert (shown_code, listed_code, follow_code, coloured_code) == (0, 0, 0, 0)
    assert "\x1b" not in shown
    assert "\x1b" not in listed
    assert not SGR.search(followed)  # only the cursor moves that redraw the lines
    assert "✓ succeeded in " in followed
    assert SGR.search(coloured)  # the same command in colour, without NO_COLOR


def test_a_dumb_terminal_gets_plain_lines_without_escapes(base_url: str) -> None:
    code, text = in_terminal(base_url, "run", "controlled", "-f", TERM="dumb")

    assert code == 0
    assert "\x1b" not in text
    assert re.search(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ  ✓ run succeeded", text, re.M)
