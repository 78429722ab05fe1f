"""Route dependencies that authenticate a request and check its key's scope.

``ReadKey``, ``RunKey`` and ``AdminKey`` are the principal of a request allowed that scope;
declaring one on a route also declares the bearer scheme in the OpenAPI document.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Query, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.security.keys import Principal, Scope
from app.security.tokens import all_events_stream, run_stream

__all__ = ["BEARER", "AdminKey", "ReadKey", "RunKey", "StreamKey", "authenticate"]

BEARER = HTTPBearer(
    auto_error=False,
    scheme_name="apiKey",
    bearerFormat="sl_<id>_<secret>",
    description="An API key from `stepline keys create`. Not needed while authentication "
    "is off (no key exists and the server listens on loopback only).",
)


def _server_host(request: Request) -> str | None:
    server = request.scope.get("server")
    return str(server[0]) if server else None


async def authenticate(request: Request, scope: Scope) -> Principal:
    """The principal of ``request``, which must be allowed ``scope``."""
    auth = request.app.state.services.auth
    return await auth.authenticate(  # type: ignore[no-any-return]
        request.headers.get("authorization"), scope, _server_host(request)
    )


def _require(scope: Scope) -> Callable[..., Awaitable[Principal]]:
    async def dependency(
        request: Request,
        _credentials: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)],
    ) -> Principal:
        return await authenticate(request, scope)

    return dependency


async def _stream_principal(
    request: Request,
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)],
    token: Annotated[
        str | None,
        Query(
            max_length=1000,
            description="A stream token (from the matching POST …/stream-token), for clients "
            "such as a browser's EventSource that cannot send an Authorization header. Valid "
            "once, for this stream only, for a few minutes.",
        ),
    ] = None,
) -> Principal:
    run_id = request.path_params.get("run_id")
    stream = run_stream(run_id) if run_id is not None else all_events_stream()
    auth = request.app.state.services.auth
    return await auth.authenticate_stream(  # type: ignore[no-any-return]
        request.headers.get("authorization"), token, stream, _server_host(request)
    )


ReadKey = Annotated[Principal, Depends(_require("read"))]
StreamKey = Annotated[Principal, Depends(_stream_principal)]
"""``ReadKey`` for event streams: a bearer key, or a stream token as ``?token=``."""
RunKey = Annotated[Principal, Depends(_require("run"))]
AdminKey = Annotated[Principal, Depends(_require("admin"))]
