"""When authentication is enforced, and who a request's credentials say is asking.

``STEPLINE_AUTH`` decides:

- ``on``: every request but the health probes needs a key.
- ``off``: nobody needs one (refused at start on a non-loopback address unless
  ``STEPLINE_ALLOW_OPEN=true``).
- ``auto`` (the default): on as soon as any key has been created (revoking every key does
  not turn it off), and on whenever the server listens beyond loopback or a request arrives
  on a non-loopback address, unless ``STEPLINE_ALLOW_OPEN=true`` says the deployment is
  open on purpose (then only keys turn it on).
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import secrets
from typing import Literal

from app.errors import Forbidden, Unauthorized
from app.security.keys import ANONYMOUS, ApiKeys, Principal, Scope
from app.security.tokens import StreamTokens

__all__ = ["AuthMode", "Authenticator", "OpenDeploymentRefused", "is_loopback"]

AuthMode = Literal["auto", "on", "off"]
log = logging.getLogger("stepline.security")

TOKEN_SECRET_NAME = "stream-token-signing"
TOKEN_SECRET_BYTES = 32
_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})
_OPEN_BANNER = (
    "SERVING WITHOUT AUTHENTICATION on %s: anyone who can reach this address can read, "
    "start and cancel runs (STEPLINE_ALLOW_OPEN=true). Create a key with `stepline keys "
    "create` to turn authentication on."
)


class OpenDeploymentRefused(RuntimeError):
    """The server would answer beyond loopback without asking for keys, and nothing says
    that this is intended."""


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or address to bind) is reachable from this machine only."""
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@functools.lru_cache(maxsize=64)
def _arrived_from_outside(server_host: str | None) -> bool:
    # The local address the connection came in on. Anything not an IP address (a test
    # transport's host name, a Unix socket's path) says nothing either way. Cached: a
    # server listens on a few addresses, and parsing one is on every request.
    if server_host is None:
        return False
    try:
        return not ipaddress.ip_address(server_host).is_loopback
    except ValueError:
        return False


class Authenticator:
    """Turns a request's ``Authorization`` header into a ``Principal``, or refuses it."""

    def __init__(
        self,
        keys: ApiKeys,
        mode: AuthMode,
        *,
        host: str,
        allow_open: bool,
        tokens: StreamTokens | None = None,
    ) -> None:
        self.keys, self.mode, self.host, self.allow_open = keys, mode, host, allow_open
        self.tokens = tokens if tokens is not None else StreamTokens()
        self.exposed = not is_loopback(host)
        self.started = False

    async def start(self, token_secret: str | None = None) -> None:
        """Take the secret that signs stream tokens (made and stored by the first replica
        to start, unless configured), then check the deployment (``check_deployment``)."""
        if token_secret is None:
            candidate = secrets.token_urlsafe(TOKEN_SECRET_BYTES)
            token_secret = await self.keys.store.server_secret(TOKEN_SECRET_NAME, candidate)
        self.tokens.secret = token_secret.encode()
        await self.check_deployment()

    async def enforced(self, server_host: str | None = None) -> bool:
        """Whether a request that arrived on ``server_host`` must present a key."""
        if self.mode != "auto":
            return self.mode == "on"
        # Until the app's lifespan has started the store there are no keys to ask about (an
        # app served without its lifespan answers the catalogue only).
        if self.started and await self.keys.exist():
            return True
        if self.allow_open:
            return False
        return self.exposed or _arrived_from_outside(server_host)

    async def authenticate(
        self, authorization: str | None, scope: Scope, server_host: str | None = None
    ) -> Principal:
        """The principal of a bearer key that has ``scope``; ``Unauthorized`` without a
        usable key, ``Forbidden`` for a key without the scope."""
        if not await self.enforced(server_host):
            return ANONYMOUS
        principal = await self.bearer(authorization)
        self.require(principal, scope)
        return principal

    async def authenticate_stream(
        self,
        authorization: str | None,
        token: str | None,
        stream: str,
        server_host: str | None = None,
    ) -> Principal:
        """``authenticate`` for ``read``, or else with a stream token for ``stream``
        (valid once, for that stream, for its key as long as the key is not revoked)."""
        if token is None or authorization is not None or not await self.enforced(server_host):
            return await self.authenticate(authorization, "read", server_host)
        grant = self.tokens.check(token, stream)
        principal = None if grant.key_id is None else await self.keys.check(grant.key_id, None)
        if principal is None:
            raise Unauthorized("the stream token's key is revoked, or it was minted without one")
        if not await self.keys.store.use_stream_token(grant.token_id, grant.expires_at):
            raise Unauthorized("this stream token has been used already: mint another")
        self.require(principal, "read")
        return principal

    async def bearer(self, authorization: str | None) -> Principal:
        if authorization is None:
            raise Unauthorized("this operation needs an API key: Authorization: Bearer <key>")
        scheme, _, credentials = authorization.partition(" ")
        credentials = credentials.strip()
        if scheme.lower() != "bearer" or not credentials:
            raise Unauthorized("credentials must be an API key: Authorization: Bearer <key>")
        principal = await self.keys.principal(credentials)
        if principal is None:
            raise Unauthorized("the API key is unknown, revoked or malformed")
        return principal

    @staticmethod
    def require(principal: Principal, scope: Scope) -> None:
        if not principal.allows(scope):
            raise Forbidden(f"this operation needs a key with the {scope!r} scope")

    async def check_deployment(self) -> None:
        """Refuse to serve beyond loopback without keys unless told the deployment is open,
        and say loudly when it is."""
        keys = await self.keys.exist()
        self.started = True
        if self.exposed and not self.allow_open:
            if self.mode == "off":
                raise OpenDeploymentRefused(
                    f"STEPLINE_AUTH=off while listening on {self.host}: set "
                    "STEPLINE_ALLOW_OPEN=true if this deployment is meant to be open"
                )
            if not keys:
                raise OpenDeploymentRefused(
                    f"listening on {self.host} and no API key exists: create one with "
                    "`stepline keys create --name admin --scopes admin`, or set "
                    "STEPLINE_ALLOW_OPEN=true if this deployment is meant to be open"
                )
        open_ = self.mode == "off" or (self.mode == "auto" and not keys)
        if self.exposed and open_:
            log.warning(_OPEN_BANNER, self.host)
        elif self.mode == "on" and not keys:
            log.warning("STEPLINE_AUTH=on and no API key exists: every request will be refused")
        elif open_:
            log.info("authentication is off: no API key exists and %s is loopback", self.host)
        else:
            log.info("authentication is on")
