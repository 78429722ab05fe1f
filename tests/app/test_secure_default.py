"""Secure by default: ``stepline serve`` beyond loopback without keys does not start."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.app.processes import ROOT, START_SECONDS, free_port


def serve(tmp_path: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    settings = {
        "PYTHONPATH": str(ROOT),
        "STEPLINE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'stepline.db'}",
        "STEPLINE_ENTRY_POINTS": "false",
        **env,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "app", "serve", "--port", str(free_port())],
        env={**os.environ, **settings},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def test_serving_on_every_address_without_a_key_exits_before_listening(tmp_path: Path) -> None:
    process = serve(tmp_path, {"STEPLINE_HOST": "0.0.0.0"})
    try:
        _out, err = process.communicate(timeout=START_SECONDS)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    log = err.decode()
    assert process.returncode != 0
    assert "no API key exists" in log
    assert "STEPLINE_ALLOW_OPEN=true" in log
    assert "Uvicorn running" not in log
