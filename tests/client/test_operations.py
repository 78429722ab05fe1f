"""Every operation of the HTTP contract has a method on both clients."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from stepline_client import OPERATIONS, AsyncClient, Client
from stepline_client.client import (
    _AsyncEvents,
    _AsyncPipelines,
    _AsyncRuns,
    _Events,
    _Pipelines,
    _Runs,
)

ROOT = Path(__file__).resolve().parents[2]
METHODS = {"get", "post", "put", "patch", "delete"}

NAMESPACES: dict[type, dict[str, type]] = {
    Client: {"pipelines": _Pipelines, "runs": _Runs, "events": _Events},
    AsyncClient: {"pipelines": _AsyncPipelines, "runs": _AsyncRuns, "events": _AsyncEvents},
}


def operation_ids() -> set[str]:
    contract = json.loads((ROOT / "openapi.json").read_text(encoding="utf-8"))
    return {
        operation["operationId"]
        for item in contract["paths"].values()
        for method, operation in item.items()
        if method in METHODS
    }


def test_every_operation_id_of_the_contract_has_a_client_method() -> None:
    assert operation_ids() - OPERATIONS.keys() == set()
    assert OPERATIONS.keys() - operation_ids() == set()


@pytest.mark.parametrize("client", [Client, AsyncClient])
def test_every_mapped_method_exists(client: type) -> None:
    for operation, dotted in OPERATIONS.items():
        *namespace, method = dotted.split(".")
        owner = NAMESPACES[client][namespace[0]] if namespace else client
        assert callable(getattr(owner, method, None)), f"{operation}: {client.__name__}.{dotted}"


def test_the_client_does_not_import_the_server() -> None:
    code = (
        "import sys, stepline_client\n"
        "assert not any(m == 'app' or m.startswith('app.') for m in sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
