"""``POST /runs`` served in front of the middleware stack, for the common request.

Creating runs is the API's hot path: a dashboard or a script may start hundreds a second,
and a request that walks the whole stack (error and exception middleware, the body limit,
the security headers, routing, the dependency machinery) costs the server more in that
walk than in creating the run. The lane takes a request only when it can answer it exactly
as the declared route would: ``POST /runs`` with ``Content-Type: application/json``, a
``Content-Length`` within the body limit, no ``Origin`` (CORS is the middleware's), a body
that is a valid ``RunCreate`` and a well-formed ``Idempotency-Key``. Everything else, and
every request the key does not authenticate, goes down the stack untouched (with the body
replayed once read), so the declared route still answers and renders every refusal.

Once the lane has started creating a run, it answers what comes of it itself: the run, or
the service's refusal as the same problem details the app's handlers write, with the same
headers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.headers import with_headers
from app.api.limits import replaying
from app.api.problems import domain_problem, unexpected_problem
from app.api.routes.runs import IDEMPOTENCY_KEY_LENGTH, create_response
from app.api.schemas import RunCreate
from app.errors import SteplineError
from app.security.keys import Principal

if TYPE_CHECKING:
    from app.api.deps import Services

__all__ = ["CreateRunLane"]


_LOOKED_AT = frozenset(
    {b"content-type", b"content-length", b"idempotency-key", b"authorization", b"origin"}
)


class CreateRunLane:
    """An ASGI app that serves the common ``POST /runs`` itself and passes anything else to
    ``app`` (the whole middleware stack)."""

    def __init__(self, app: ASGIApp, services: Services, max_body_bytes: int) -> None:
        self.app = app
        self.services = services
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/runs" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        headers: dict[bytes, bytes] = {}
        for name, value in scope["headers"]:
            if name in _LOOKED_AT:
                if name in headers:  # a repeated header: the stack decides what it means
                    await self.app(scope, receive, send)
                    return
                headers[name] = value
        length = headers.get(b"content-length", b"")
        if (
            headers.get(b"content-type") != b"application/json"
            or b"origin" in headers
            or not length.isdigit()
            or int(length) > self.max_body_bytes
        ):
            await self.app(scope, receive, send)
            return
        authorization = headers.get(b"authorization")
        server = scope.get("server")
        try:
            # Before the body is read, as on the declared route: no key, no answer about it.
            principal = await self.services.auth.authenticate(
                None if authorization is None else authorization.decode("latin-1"),
                "run",
                str(server[0]) if server else None,
            )
        except SteplineError:
            await self.app(scope, receive, send)
            return
        body = await _read(receive)
        if body is None:
            return  # the client went away
        replay = replaying(body, receive)
        key_bytes = headers.get(b"idempotency-key")
        key = None if key_bytes is None else key_bytes.decode("latin-1")
        if key is not None and not 1 <= len(key) <= IDEMPOTENCY_KEY_LENGTH:
            await self.app(scope, replay, send)
            return
        try:
            request = RunCreate.model_validate_json(body)
        except ValidationError:
            await self.app(scope, replay, send)
            return
        await self._create(scope, send, request, key, principal)

    async def _create(
        self, scope: Scope, send: Send, request: RunCreate, key: str | None, principal: Principal
    ) -> None:
        try:
            response = await create_response(self.services, request, key, principal)
        except SteplineError as exc:
            response = domain_problem(exc, scope["path"])
        except Exception:
            await unexpected_problem("POST", scope["path"])(scope, _no_body, send)
            return
        await response(scope, _no_body, with_headers(send))  # as SecurityHeadersMiddleware


async def _read(receive: Receive) -> bytes | None:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def _no_body() -> Message:
    return {"type": "http.disconnect"}  # never asked: the body has been read
