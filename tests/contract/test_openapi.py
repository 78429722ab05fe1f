"""The committed ``openapi.json`` is the HTTP contract: it is what the app generates, and it
says what clients rely on (operation ids, the media types of streams and of errors)."""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Any

import pytest

from app.cli import main, openapi_document, openapi_text

OPENAPI_JSON = Path(__file__).resolve().parents[2] / "openapi.json"
PROBLEM_JSON = "application/problem+json"
DIFF_LINES = 60

OPERATION_IDS = {
    ("get", "/pipelines"): "list_pipelines",
    ("get", "/pipelines/{name}"): "get_pipeline",
    ("post", "/runs"): "create_run",
    ("get", "/runs"): "list_runs",
    ("get", "/runs/{run_id}"): "get_run",
    ("post", "/runs/{run_id}/cancel"): "cancel_run",
    ("get", "/runs/{run_id}/logs"): "get_run_logs",
    ("get", "/runs/{run_id}/events"): "stream_run_events",
    ("get", "/events"): "stream_events",
    ("post", "/runs/{run_id}/stream-token"): "create_run_stream_token",
    ("post", "/events/stream-token"): "create_events_stream_token",
    ("get", "/healthz"): "healthz",
    ("get", "/readyz"): "readyz",
    ("get", "/metrics"): "metrics",
}
SSE_OPERATIONS = ("stream_run_events", "stream_events")


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return openapi_document()


def operations(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {op["operationId"]: op for path in document["paths"].values() for op in path.values()}


def error_responses(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """``(operation id, status, response)`` for every 4xx and 5xx response declared."""
    return [
        (op_id, status, response)
        for op_id, op in operations(document).items()
        for status, response in op["responses"].items()
        if status[0] in "45"
    ]


def is_fastapi_default_422(response: dict[str, Any]) -> bool:
    schema = response.get("content", {}).get("application/json", {}).get("schema", {})
    return bool(schema.get("$ref", "").endswith("/HTTPValidationError"))


def test_committed_openapi_json_is_what_the_app_generates() -> None:
    generated = openapi_text()
    committed = OPENAPI_JSON.read_text(encoding="utf-8") if OPENAPI_JSON.exists() else ""

    if committed != generated:
        diff = list(
            difflib.unified_diff(
                committed.splitlines(),
                generated.splitlines(),
                "openapi.json (committed)",
                "openapi.json (generated)",
                lineterm="",
            )
        )
        pytest.fail(
            "openapi.json does not match the app: run `make openapi` and commit the result.\n"
            + "\n".join(diff[:DIFF_LINES])
            + ("\n..." if len(diff) > DIFF_LINES else ""),
            pytrace=False,
        )


def test_the_file_is_indented_json_in_fastapi_order_with_a_final_newline(
    document: dict[str, Any],
) -> None:
    text = openapi_text()

    assert text.endswith("}\n")
    assert text.startswith('{\n  "openapi": ')
    assert json.loads(text) == document
    assert list(json.loads(text)) == list(document)  # key order kept, not sorted


def test_the_command_writes_the_document_to_a_path_or_to_stdout(
    tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    target = tmp_path / "contract.json"

    assert main(["openapi", str(target)]) == 0
    assert main(["openapi", "-"]) == 0

    expected = openapi_text()
    assert target.read_text(encoding="utf-8") == expected
    assert capsysbinary.readouterr().out.decode() == expected


def test_the_document_ignores_stepline_environment_variables(
    monkeypatch: pytest.MonkeyPatch, document: dict[str, Any]
) -> None:
    monkeypatch.setenv("STEPLINE_PIPELINES", "no.such.module")
    monkeypatch.setenv("STEPLINE_DEMO_PIPELINES", "false")
    monkeypatch.setenv("STEPLINE_PORT", "not a port")

    assert openapi_document() == document


def test_operation_ids_are_the_stable_readable_names(document: dict[str, Any]) -> None:
    found = {
        (method, path): op["operationId"]
        for path, methods in document["paths"].items()
        for method, op in methods.items()
    }

    assert found == OPERATION_IDS


@pytest.mark.parametrize("operation_id", SSE_OPERATIONS)
def test_streams_declare_text_event_stream(document: dict[str, Any], operation_id: str) -> None:
    ok = operations(document)[operation_id]["responses"]["200"]

    assert list(ok["content"]) == ["text/event-stream"]


def test_declared_problems_are_application_problem_json(document: dict[str, Any]) -> None:
    declared = [r for r in error_responses(document) if not is_fastapi_default_422(r[2])]
    missing = [(op_id, status) for op_id, status, r in declared if PROBLEM_JSON not in r["content"]]

    assert len(declared) >= len(OPERATION_IDS)  # the PROBLEMS(...) of the routes
    assert missing == []


def test_every_error_response_declares_application_problem_json(
    document: dict[str, Any],
) -> None:
    missing = [
        (op_id, status)
        for op_id, status, response in error_responses(document)
        if PROBLEM_JSON not in response.get("content", {})
    ]

    assert missing == []


def test_problem_responses_carry_the_problem_schema_under_problem_json_only(
    document: dict[str, Any],
) -> None:
    wrong = [
        (op_id, status, sorted(response["content"]))
        for op_id, status, response in error_responses(document)
        if list(response["content"]) != [PROBLEM_JSON]
        or response["content"][PROBLEM_JSON].get("schema", {}).get("$ref")
        != "#/components/schemas/Problem"
    ]

    assert wrong == []
