"""A server that wants a key: ``stepline`` sends ``--api-key`` or ``$STEPLINE_API_KEY``,
and a missing or wrong key ends it with exit code 4."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from tests.app.processes import ROOT, free_port, stepline_serve

from .conftest import WAIT, Stepline, command_env, stepline_command


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stepline, str]]:
    database = tmp_path_factory.mktemp("cli-auth") / "stepline.db"
    env = {"STEPLINE_DATABASE_URL": f"sqlite+aiosqlite:///{database}"}
    created = subprocess.run(
        stepline_command("keys", "create", "--name", "cli", "--scopes", "read,run"),
        capture_output=True, text=True, timeout=WAIT, env=command_env("", **env), cwd=ROOT,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    port = free_port()
    with stepline_serve(database, port, {}):
        yield Stepline(f"http://127.0.0.1:{port}"), created.stdout.strip()


def test_without_a_key_the_command_exits_4_and_says_how_to_send_one(
    secured: tuple[Stepline, str],
) -> None:
    stepline, _key = secured

    done = stepline("runs")

    assert done.returncode == 4
    assert "401" in done.stderr
    assert "pass --api-key or set STEPLINE_API_KEY" in done.stderr
    assert done.stdout == ""


def test_a_wrong_key_exits_4(secured: tuple[Stepline, str]) -> None:
    stepline, key = secured

    done = stepline("--api-key", key[:-2] + "xx", "run", "controlled", "-f")

    assert done.returncode == 4
    assert "401" in done.stderr
    assert "check the key" in done.stderr


def test_the_key_from_the_option_or_the_environment_is_sent(
    secured: tuple[Stepline, str],
) -> None:
    stepline, key = secured

    listed = stepline("runs", "--api-key", key)
    followed = stepline("run", "controlled", "-f", env={"STEPLINE_API_KEY": key})

    assert listed.returncode == 0, listed.stderr
    assert followed.returncode == 0, followed.stderr
    assert followed.stdout.startswith("✓ succeeded in ")
