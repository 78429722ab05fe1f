"""Every error as RFC 9457 problem details (``application/problem+json``).

Domain errors carry their own type, title and status; FastAPI's and Starlette's own 404,
405 and 422 are rendered the same way; anything unexpected is a 500 whose body says nothing
about the internals (the traceback goes to the log).
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.api.headers import API_HEADERS
from app.errors import PROBLEM_BASE, SteplineError

__all__ = [
    "PROBLEM_JSON",
    "domain_problem",
    "install_problem_handlers",
    "problem_response",
    "unexpected_problem",
]

PROBLEM_JSON = "application/problem+json"
log = logging.getLogger("stepline.api")

_SLUGS = {
    400: "bad-request",
    401: "unauthorized",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    413: "payload-too-large",
    422: "invalid-request",
    429: "too-many-requests",
    503: "unavailable",
}


def problem_response(
    status: int,
    detail: str | None,
    *,
    instance: str | None = None,
    type_: str | None = None,
    title: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    """A problem-details response."""
    body: dict[str, Any] = {
        "type": type_ or PROBLEM_BASE + _SLUGS.get(status, "error"),
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "instance": instance,
        **extra,
    }
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def install_problem_handlers(app: FastAPI) -> None:
    """Render every error the app can raise as problem details."""

    @app.exception_handler(SteplineError)
    async def _domain(request: Request, exc: SteplineError) -> JSONResponse:
        return domain_problem(exc, request.url.path)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": list(map(str, e["loc"])), "msg": e["msg"], "type": e["type"]}
            for e in exc.errors()
        ]
        fields = ", ".join(".".join(e["loc"]) for e in errors)
        return problem_response(
            422, f"the request is not valid: {fields}", instance=request.url.path, errors=errors
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem_response(
            exc.status_code,
            str(exc.detail) if exc.detail else None,
            instance=request.url.path,
            headers=dict(exc.headers or {}),
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        return unexpected_problem(request.method, request.url.path)


def domain_problem(exc: SteplineError, path: str) -> JSONResponse:
    """The problem details of one of the errors the API raises on purpose."""
    return problem_response(
        exc.status,
        exc.detail,
        instance=path,
        type_=exc.type,
        title=exc.title,
        headers=exc.headers or None,
        **exc.extra,
    )


def unexpected_problem(method: str, path: str) -> JSONResponse:
    """The 500 of an error nobody expected, logged with its traceback (call it from an
    ``except`` block). It carries the security headers itself: Starlette sends it from the
    outermost middleware, past the one that adds them to every other answer."""
    log.exception("unhandled error on %s %s", method, path)
    response = problem_response(
        500, "an unexpected error occurred; it has been logged", instance=path
    )
    response.raw_headers.extend(API_HEADERS)
    return response
