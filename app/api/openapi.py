"""The OpenAPI document as the API really answers: every error is problem details."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from app.api.schemas import Problem

__all__ = ["install_openapi"]

PROBLEM_JSON = "application/problem+json"
_FRAMEWORK_ERROR_SCHEMAS = ("HTTPValidationError", "ValidationError")


def install_openapi(app: FastAPI) -> None:
    """Make ``app.openapi()`` describe every 4xx/5xx as ``application/problem+json``.

    FastAPI declares its own 422 as ``application/json`` with its validation-error schema;
    the app never answers that way (see ``app.api.problems``), so the document says what
    clients really get.
    """

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
        )
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        for name in _FRAMEWORK_ERROR_SCHEMAS:
            schemas.pop(name, None)
        schemas["Problem"] = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
        problem = {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}
        for path in document.get("paths", {}).values():
            for operation in path.values():
                for status, response in operation.get("responses", {}).items():
                    if status[0] in "45":
                        response["content"] = problem
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]
