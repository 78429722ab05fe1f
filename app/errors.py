"""Domain errors, each rendered as RFC 9457 problem details by the API.

::

    SteplineError                 500  internal-error
    ├── NotFound                  404  not-found
    │   ├── RunNotFound           404  run-not-found
    │   └── PipelineNotFound      404  pipeline-not-found
    ├── Conflict                  409  conflict
    │   ├── InvalidTransition     409  invalid-transition
    │   ├── IdempotencyConflict   409  idempotency-key-reused
    │   └── LeaseLost             409  lease-lost (internal: a stale owner's write)
    ├── InvalidParams             422  invalid-params
    ├── BadRequest                400  bad-request
    ├── PayloadTooLarge           413  payload-too-large
    └── Unavailable               503  unavailable
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "PROBLEM_BASE",
    "BadRequest",
    "Conflict",
    "IdempotencyConflict",
    "InvalidParams",
    "InvalidTransition",
    "LeaseLost",
    "NotFound",
    "PayloadTooLarge",
    "PipelineNotFound",
    "RunNotFound",
    "SteplineError",
    "Unavailable",
]

PROBLEM_BASE = "https://stepline.dev/problems/"
"""Problem types are URIs under this base; the slug names the problem."""


class SteplineError(Exception):
    """Base of the errors the API renders; ``slug``, ``title`` and ``status`` make the type."""

    slug: ClassVar[str] = "internal-error"
    title: ClassVar[str] = "Internal error"
    status: ClassVar[int] = 500

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra

    @property
    def type(self) -> str:
        return PROBLEM_BASE + self.slug


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


class InvalidParams(SteplineError):
    slug, title, status = "invalid-params", "Invalid parameters", 422


class BadRequest(SteplineError):
    slug, title, status = "bad-request", "Bad request", 400


class PayloadTooLarge(SteplineError):
    slug, title, status = "payload-too-large", "Request body too large", 413


class Unavailable(SteplineError):
    slug, title, status = "unavailable", "Service unavailable", 503
