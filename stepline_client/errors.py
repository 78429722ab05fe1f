"""Exceptions for the API's problem-details answers, one class per status."""

from __future__ import annotations

from typing import Any

import httpx

__all__ = [
    "BadRequest",
    "Conflict",
    "Forbidden",
    "InvalidRequest",
    "NotFound",
    "PayloadTooLarge",
    "SteplineError",
    "TooManyRequests",
    "Unauthorized",
    "Unavailable",
    "error_for",
]


class SteplineError(Exception):
    """An error answer: ``status`` and the problem-details document (``problem``)."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        self.status = status
        self.problem = problem
        title = problem.get("title") or f"HTTP {status}"
        detail = problem.get("detail")
        super().__init__(f"{status} {title}" + (f": {detail}" if detail else ""))

    @property
    def title(self) -> str | None:
        value = self.problem.get("title")
        return value if isinstance(value, str) else None

    @property
    def detail(self) -> str | None:
        value = self.problem.get("detail")
        return value if isinstance(value, str) else None


class BadRequest(SteplineError):
    pass


class Unauthorized(SteplineError):
    pass


class Forbidden(SteplineError):
    pass


class NotFound(SteplineError):
    pass


class Conflict(SteplineError):
    pass


class PayloadTooLarge(SteplineError):
    pass


class InvalidRequest(SteplineError):
    pass


class _RetryAfter(SteplineError):
    def __init__(
        self, status: int, problem: dict[str, Any], retry_after: float | None = None
    ) -> None:
        super().__init__(status, problem)
        self.retry_after = retry_after


class TooManyRequests(_RetryAfter):
    pass


class Unavailable(_RetryAfter):
    pass


_CLASSES: dict[int, type[SteplineError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    422: InvalidRequest,
}


def retry_after(response: httpx.Response) -> float | None:
    """``Retry-After`` in seconds; the HTTP-date form is not used by the server."""
    value = response.headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def error_for(response: httpx.Response) -> SteplineError:
    """The exception for an error ``response`` whose body has been read."""
    try:
        body = response.json()
    except ValueError:
        body = None
    problem: dict[str, Any] = (
        body
        if isinstance(body, dict)
        else {
            "title": response.reason_phrase,
            "status": response.status_code,
            "detail": response.text or None,
        }
    )
    status = response.status_code
    if status == 429:
        return TooManyRequests(status, problem, retry_after(response))
    if status == 503:
        return Unavailable(status, problem, retry_after(response))
    return _CLASSES.get(status, SteplineError)(status, problem)
