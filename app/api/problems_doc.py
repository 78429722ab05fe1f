"""OpenAPI documentation of problem-details responses."""

from __future__ import annotations

from typing import Any

from app.api.schemas import Problem

__all__ = ["PROBLEMS"]

_DESCRIPTIONS = {
    400: "Bad request",
    401: "No usable API key (WWW-Authenticate: Bearer)",
    403: "The key lacks the scope this operation needs",
    404: "Not found",
    409: "Conflict with the run's current status",
    413: "Request body too large",
    422: "Invalid request",
    429: "A quota is exhausted (Retry-After says when to try again)",
    503: "Not ready",
}


def PROBLEMS(*statuses: int) -> dict[int | str, dict[str, Any]]:  # reads as a constant
    """``responses=`` for routes that answer these statuses with problem details."""
    return {
        status: {"model": Problem, "description": _DESCRIPTIONS.get(status, "Error")}
        for status in statuses
    }
