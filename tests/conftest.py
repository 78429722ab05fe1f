"""Fixtures of the whole session: the directory of the tests' gates, and a local Ray.

Both are shared across processes: the gates with every process the tests start (Ray
workers, servers), and Ray with the tests' own process and every server that joins it.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import pytest

from tests.app.pipelines import GATES_DIRECTORY
from tests.raycluster import RayHead, ray_head

RAY_CPUS = 4  # logical CPUs: as many runs as an app of the tests keeps in flight (workers=4)


def pytest_configure(config: pytest.Config) -> None:
    """The session's Ray takes a token of its own, whatever ``~/.ray`` holds, so that only
    the session's processes can join it. Set before anything imports Ray (which reads it
    once per process), for this process and every process it starts."""
    os.environ["RAY_AUTH_MODE"] = "token"
    os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)


@pytest.fixture(scope="session", autouse=True)
def gate_directory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Where steps wait at gates, for every process of the session (set before any starts)."""
    directory = str(tmp_path_factory.mktemp("gates"))
    before = os.environ.get(GATES_DIRECTORY)
    os.environ[GATES_DIRECTORY] = directory
    try:
        yield directory
    finally:
        if before is None:
            del os.environ[GATES_DIRECTORY]
        else:
            os.environ[GATES_DIRECTORY] = before


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory, gate_directory: str) -> Iterator[RayHead]:
    """A local Ray, started once, which this process has joined: apps created here execute
    their runs on it, and server processes join it by its ``address``."""
    import ray

    with ray_head(
        tmp_path_factory.mktemp("ray"), cpus=RAY_CPUS, env={GATES_DIRECTORY: gate_directory}
    ) as head:
        ray.init(address=head.address, namespace="stepline-tests", log_to_driver=False)
        try:
            yield head
        finally:
            ray.shutdown()
