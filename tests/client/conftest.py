"""A real ``stepline serve`` process with the test pipelines, shared by a module's tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.app.processes import free_port, stepline_serve

PIPELINES = "tests.app.pipelines,tests.app.pipelines:FileGateAction"
WAIT = 30.0  # seconds any test waits for a run to finish


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    database = tmp_path_factory.mktemp("client") / "stepline.db"
    port = free_port()
    with stepline_serve(database, port, {"STEPLINE_PIPELINES": PIPELINES}):
        yield f"http://127.0.0.1:{port}"
