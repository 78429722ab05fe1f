"""API keys: their format, the hash of their secret, and checking a presented key.

A key reads ``sl_<id>_<secret>``. The id is public (it names the key in ``stepline keys
list`` and on the runs it creates) and finds the key's row; only a salted scrypt hash of the
secret is stored, and the secret is compared in constant time. Verifying a hash takes tens
of milliseconds on purpose, so a verified key is remembered for ``cache_seconds`` under a
SHA-256 digest of the whole key: the hot path pays a dictionary lookup, and a revoked key
stops working within ``cache_seconds``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal, get_args

from app.store.base import Store
from app.store.records import ApiKeyRow, NewApiKey

__all__ = [
    "ANONYMOUS",
    "KEY_PATTERN",
    "SCOPES",
    "ApiKeys",
    "Principal",
    "Scope",
    "hash_secret",
    "new_key",
    "parse_key",
    "parse_scopes",
    "verify_secret",
]

Scope = Literal["read", "run", "admin"]
SCOPES: tuple[Scope, ...] = get_args(Scope)
KEY_PREFIX = "sl"
ID_BYTES = 6  # 12 hex digits: public, only needs to be unique
SECRET_BYTES = 32
KEY_PATTERN = re.compile(r"sl_[0-9a-f]{12}_[A-Za-z0-9_-]{43}")
"""What a key looks like (to find one where it must not be, such as a log)."""
NAME_LENGTH = 200

# scrypt with n=2**14, r=8: 16 MiB and some 50 ms per hash, per RFC 7914's interactive
# recommendation; the parameters are stored with each hash, so they can grow later.
SCRYPT_N, SCRYPT_R, SCRYPT_P, HASH_BYTES, SALT_BYTES = 2**14, 8, 1, 32, 16
SCRYPT_MAXMEM = 64 * 1024 * 1024
DEFAULT_CACHE_SECONDS = 10.0
CACHE_SIZE = 10_000
VERIFY_CONCURRENCY = 2  # hashes computed at once: bad keys cannot take every thread


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is asking: a key (its id, name and scopes), or anyone when auth is off."""

    key_id: str | None
    name: str
    scopes: frozenset[str]

    def allows(self, scope: Scope) -> bool:
        return "admin" in self.scopes or scope in self.scopes

    @property
    def owner_filter(self) -> str | None:
        """The key whose runs this principal may see, or None for every run."""
        return None if "admin" in self.scopes else self.key_id


ANONYMOUS = Principal(None, "anonymous", frozenset({"admin"}))
"""Everyone, when authentication is not enforced: sees and does everything."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_secret(secret: str, salt: bytes | None = None) -> str:
    """``scrypt$n$r$p$salt$hash`` of ``secret`` with a fresh random salt (or ``salt``)."""
    salt = salt if salt is not None else secrets.token_bytes(SALT_BYTES)
    digest = hashlib.scrypt(
        secret.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P,
        maxmem=SCRYPT_MAXMEM, dklen=HASH_BYTES,
    )  # fmt: skip
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def verify_secret(secret: str, encoded: str) -> bool:
    """Whether ``secret`` hashes to ``encoded`` (compared in constant time)."""
    try:
        algorithm, n, r, p, salt, expected = encoded.split("$")
        if algorithm != "scrypt":
            return False
        digest = hashlib.scrypt(
            secret.encode(), salt=_unb64(salt), n=int(n), r=int(r), p=int(p),
            maxmem=SCRYPT_MAXMEM, dklen=len(_unb64(expected)),
        )  # fmt: skip
    except ValueError:
        return False
    return hmac.compare_digest(digest, _unb64(expected))


def parse_scopes(scopes: Iterable[str]) -> tuple[Scope, ...]:
    """Scopes in their canonical order; ``ValueError`` for an unknown or no scope."""
    given = {s.strip() for item in scopes for s in item.split(",") if s.strip()}
    unknown = given - set(SCOPES)
    if unknown:
        raise ValueError(f"unknown scopes {sorted(unknown)}; the scopes are {', '.join(SCOPES)}")
    if not given:
        raise ValueError(f"a key needs at least one scope: {', '.join(SCOPES)}")
    return tuple(s for s in SCOPES if s in given)


def new_key(name: str, scopes: Iterable[str]) -> tuple[str, NewApiKey]:
    """A new key: the text to hand to its user (shown once) and the row to store."""
    name = name.strip()
    if not 1 <= len(name) <= NAME_LENGTH:
        raise ValueError(f"a key's name has 1 to {NAME_LENGTH} characters")
    key_id = secrets.token_hex(ID_BYTES)
    secret = secrets.token_urlsafe(SECRET_BYTES)
    text = f"{KEY_PREFIX}_{key_id}_{secret}"
    return text, NewApiKey(key_id, name, parse_scopes(scopes), hash_secret(secret))


def parse_key(text: str) -> tuple[str, str] | None:
    """``(id, secret)`` of a key's text, or None if it does not look like a key."""
    prefix, _, rest = text.partition("_")
    key_id, _, secret = rest.partition("_")
    if prefix != KEY_PREFIX or len(key_id) != 2 * ID_BYTES or not secret:
        return None
    return key_id, secret


class ApiKeys:
    """Creates, revokes and checks keys against the store."""

    def __init__(
        self,
        store: Store,
        *,
        cache_seconds: float = DEFAULT_CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.cache_seconds = cache_seconds
        self.clock = clock
        self._verified: dict[bytes, tuple[Principal, float]] = {}
        self._any: tuple[bool, float] | None = None
        self._verifying = asyncio.Semaphore(VERIFY_CONCURRENCY)

    async def create(self, name: str, scopes: Iterable[str]) -> tuple[str, ApiKeyRow]:
        """Store a new key; return its text (which nothing keeps) and its row."""
        text, key = new_key(name, scopes)
        row = await self.store.create_api_key(key)
        self._any = None
        return text, row

    async def revoke(self, id_or_name: str) -> ApiKeyRow | None:
        row = await self.store.revoke_api_key(id_or_name)
        if row is not None:
            self._verified = {
                digest: entry
                for digest, entry in self._verified.items()
                if entry[0].key_id != row.id
            }
            self._any = None
        return row

    async def list(self) -> list[ApiKeyRow]:
        return await self.store.list_api_keys()

    async def exist(self) -> bool:
        """Whether any key was ever created, revoked ones included (asked of the store at
        most every ``cache_seconds``, so a key created by another process counts soon)."""
        now = self.clock()
        if self._any is None or self._any[1] <= now:
            self._any = (await self.store.has_api_keys(), now + self.cache_seconds)
        return self._any[0]

    async def principal(self, text: str) -> Principal | None:
        """The principal of a presented key, or None if it is not a usable key."""
        digest = hashlib.sha256(text.encode()).digest()
        now = self.clock()
        cached = self._verified.get(digest)
        if cached is not None and cached[1] > now:
            return cached[0]
        parsed = parse_key(text)
        if parsed is None:
            return None
        key_id, secret = parsed
        principal = await self.check(key_id, secret)
        if principal is not None:
            self._remember(digest, principal, now)
        return principal

    async def check(self, key_id: str, secret: str | None) -> Principal | None:
        """The principal of key ``key_id`` if it exists, is not revoked and (when
        ``secret`` is given) has this secret."""
        row = await self.store.get_api_key(key_id)
        if row is None or row.revoked_at is not None:
            return None
        if secret is not None:
            async with self._verifying:
                ok = await asyncio.to_thread(verify_secret, secret, row.secret_hash)
            if not ok:
                return None
        return Principal(row.id, row.name, frozenset(row.scopes))

    def _remember(self, digest: bytes, principal: Principal, now: float) -> None:
        if len(self._verified) >= CACHE_SIZE:
            self._verified = {d: e for d, e in self._verified.items() if e[1] > now}
            while len(self._verified) >= CACHE_SIZE:
                self._verified.pop(next(iter(self._verified)))
        self._verified[digest] = (principal, now + self.cache_seconds)
