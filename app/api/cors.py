"""CORS from an explicit allow-list of origins (``STEPLINE_CORS_ORIGINS``).

Starlette's middleware does the work: an allowed origin is echoed exactly (never ``*``,
which browsers refuse with credentials), every answer varies on ``Origin``, and a
preflight from another origin gets no ``Access-Control-Allow-Origin``. The one change:
a refused preflight is problem details, as every other error is.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response
from starlette.types import ASGIApp

from app.api.problems import problem_response

__all__ = ["ALLOWED_HEADERS", "ALLOWED_METHODS", "EXPOSED_HEADERS", "CorsMiddleware"]

ALLOWED_METHODS = ("GET", "POST")
ALLOWED_HEADERS = ("Authorization", "Content-Type", "Idempotency-Key", "Last-Event-ID")
EXPOSED_HEADERS = ("Location", "Retry-After", "WWW-Authenticate")
PREFLIGHT_MAX_AGE = 600
_BODY_HEADERS = frozenset({"content-type", "content-length"})


class CorsMiddleware(CORSMiddleware):
    """CORS for ``origins`` only, with credentials; refused preflights as problem details."""

    def __init__(self, app: ASGIApp, origins: Sequence[str]) -> None:
        super().__init__(
            app,
            allow_origins=tuple(origins),
            allow_methods=ALLOWED_METHODS,
            allow_headers=ALLOWED_HEADERS,
            allow_credentials=True,
            expose_headers=EXPOSED_HEADERS,
            max_age=PREFLIGHT_MAX_AGE,
        )

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code < 400:
            return response
        headers = {k: v for k, v in response.headers.items() if k not in _BODY_HEADERS}
        reason = bytes(response.body).decode().removeprefix("Disallowed CORS ")
        return problem_response(
            response.status_code,
            f"this cross-origin request is not allowed (its {reason})",
            title="Cross-origin request refused",
            headers=headers,
        )
