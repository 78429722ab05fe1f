"""Domain errors, each rendered as RFC 9457 problem details by the API.

::

    SteplineError                 500  internal-error
    ├── Unauthorized              401  unauthorized (with WWW-Authenticate: Bearer)
    ├── Forbidden                 403  forbidden
    ├── NotFound                  404  not-found
    │   ├── RunNotFound           404  run-not-found
    │   └── PipelineNotFound      404  pipeline-not-found
    ├── Conflict                  409  conflict
    │   ├── InvalidTransition     409  invalid-transition
    │   ├── IdempotencyConflict   409  idempotency-key-reused
    │   ├── LeaseLost             409  lease-lost (internal: a stale owner's write)
    │   └── KeyNameTaken          409  key-name-taken
    ├── InvalidParams             422  invalid-params
    ├── BadRequest                400  bad-request
    ├── PayloadTooLarge           413  payload-too-large
    ├── TooManyRequests           429  too-many-requests (with Retry-After)
    │   └── QueueFull             429  queue-full
    └── Unavailable               503  unavailable
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

__all__ = [
    "PROBLEM_BASE",
    "BadRequest",
    "Conflict",
    "Forbidden",
    "IdempotencyConflict",
    "InvalidParams",
    "InvalidTransition",
    "KeyNameTaken",
    "LeaseLost",
    "NotFound",
    "PayloadTooLarge",
    "PipelineNotFound",
    "QueueFull",
    "RunNotFound",
    "SteplineError",
    "TooManyRequests",
    "Unauthorized",
    "Unavailable",
]

PROBLEM_BASE = "https://stepline.dev/problems/"
"""Problem types are URIs under this base; the slug names the problem."""


class SteplineError(Exception):
    """Base of the errors the API renders; ``slug``, ``title`` and ``status`` make the type."""

    slug: ClassVar[str] = "internal-error"
    title: ClassVar[str] = "Internal error"
    status: ClassVar[int] = 500

    def __init__(
        self, detail: str, *, headers: Mapping[str, str] | None = None, **extra: Any
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = dict(headers or {})
        self.extra = extra

    @property
    def type(self) -> str:
        return PROBLEM_BASE + self.slug


class Unauthorized(SteplineError):
    """No credentials, or credentials that are not (or no longer) a valid key or token."""

    slug, title, status = "unauthorized", "Authentication required", 401

    def __init__(self, detail: str, **extra: Any) -> None:
        # RFC 6750: a 401 names the scheme the client should use.
        super().__init__(detail, headers={"WWW-Authenticate": 'Bearer realm="stepline"'}, **extra)


class Forbidden(SteplineError):
    """A valid key without the scope the operation needs."""

    slug, title, status = "forbidden", "Insufficient scope", 403


class NotFound(SteplineError):
    slug, title, status = "not-found", "Not found", 404


class RunNotFound(NotFound):
    slug, title = "run-not-found", "Run not found"


class PipelineNotFound(NotFound):
    slug, title = "pipeline-not-found", "Pipeline not found"


class Conflict(SteplineError):
    slug, title, status = "conflict", "Conflict", 409


class InvalidTransition(Conflict):
    slug, title = "invalid-transition", "The run cannot do that in its current status"


class IdempotencyConflict(Conflict):
    slug, title = "idempotency-key-reused", "Idempotency-Key reused with another request"


class LeaseLost(Conflict):
    """A write carried a fencing epoch that is no longer the run's: another owner took it."""

    slug, title = "lease-lost", "The run belongs to another owner now"


class KeyNameTaken(Conflict):
    slug, title = "key-name-taken", "An API key with this name exists"


class InvalidParams(SteplineError):
    slug, title, status = "invalid-params", "Invalid parameters", 422


class BadRequest(SteplineError):
    slug, title, status = "bad-request", "Bad request", 400


class PayloadTooLarge(SteplineError):
    slug, title, status = "payload-too-large", "Request body too large", 413


class TooManyRequests(SteplineError):
    """A quota is exhausted; ``retry_after`` seconds is when trying again makes sense."""

    slug, title, status = "too-many-requests", "Too many requests", 429

    def __init__(self, detail: str, retry_after: float, **extra: Any) -> None:
        seconds = max(1, math.ceil(retry_after))
        super().__init__(detail, headers={"Retry-After": str(seconds)}, **extra)


class QueueFull(TooManyRequests):
    slug, title = "queue-full", "Too many queued runs"


class Unavailable(SteplineError):
    slug, title, status = "unavailable", "Service unavailable", 503
