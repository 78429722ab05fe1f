"""Security headers on every response: the API's are never sniffed, framed or referred
from, and the dashboard's pages (under ``/ui``) may load nothing but their own origin."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["API_HEADERS", "UI_HEADERS", "UI_PREFIX", "SecurityHeadersMiddleware", "with_headers"]

UI_PREFIX = "/ui"
API_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
)
UI_HEADERS = (*API_HEADERS, (b"content-security-policy", b"default-src 'self'"))


def _is_ui(path: str) -> bool:
    return path == UI_PREFIX or path.startswith(UI_PREFIX + "/")


class SecurityHeadersMiddleware:
    """Adds ``API_HEADERS`` (and on ``/ui`` a strict CSP) to every response it passes,
    errors and event streams included. Pure ASGI: a stream's body is not touched."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = UI_HEADERS if _is_ui(scope["path"]) else API_HEADERS
        await self.app(scope, receive, with_headers(send, extra))


def with_headers(send: Send, extra: tuple[tuple[bytes, bytes], ...] = API_HEADERS) -> Send:
    """``send``, adding ``extra`` to the response's headers."""

    async def send_with_headers(message: Message) -> None:
        if message["type"] == "http.response.start":
            # Appended, not merged: no route of the app sets these headers itself, and this
            # runs on every response.
            message["headers"] = [*message.get("headers", ()), *extra]
        await send(message)

    return send_with_headers
