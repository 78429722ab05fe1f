"""A typed client of the Stepline HTTP API, synchronous and asynchronous."""

from .client import OPERATIONS, AsyncClient, Client, RetryPolicy
from .errors import (
    BadRequest,
    Conflict,
    Forbidden,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    SteplineError,
    TooManyRequests,
    Unauthorized,
    Unavailable,
)
from .models import Event, LogLine, LogPage, Pipeline, Problem, Rollback, Run, RunPage, Step
from .sse import ServerSentEvent, SSEParser

__all__ = [
    "OPERATIONS",
    "AsyncClient",
    "BadRequest",
    "Client",
    "Conflict",
    "Event",
    "Forbidden",
    "InvalidRequest",
    "LogLine",
    "LogPage",
    "NotFound",
    "PayloadTooLarge",
    "Pipeline",
    "Problem",
    "RetryPolicy",
    "Rollback",
    "Run",
    "RunPage",
    "SSEParser",
    "ServerSentEvent",
    "Step",
    "SteplineError",
    "TooManyRequests",
    "Unauthorized",
    "Unavailable",
]
