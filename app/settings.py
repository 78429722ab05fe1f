"""Settings of the service, from ``STEPLINE_*`` environment variables or given directly.

Defaults give the embedded mode: a SQLite file in the working directory, in-process
workers, the demo pipelines, bound to 127.0.0.1.
"""

from __future__ import annotations

import os
import re
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

__all__ = ["DEFAULT_DATABASE_URL", "Settings", "SettingsError"]

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./stepline.db"
_ORIGIN = re.compile(r"https?://[A-Za-z0-9.\-\[\]:]+")
MIB = 1024 * 1024


class SettingsError(ValueError):
    """Settings that cannot work together, or that need what is not installed."""


class Settings(BaseSettings):
    """Everything the service can be told; ``create_app(Settings(...))`` in tests."""

    model_config = SettingsConfigDict(env_prefix="STEPLINE_", extra="forbid")

    database_url: str = Field(DEFAULT_DATABASE_URL, description="SQLAlchemy async URL.")
    pipelines: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Modules or module:attr paths that define pipelines (comma-separated).",
    )
    demo_pipelines: bool = Field(True, description="Register the built-in demo pipelines.")
    entry_points: bool = Field(True, description="Load the stepline.pipelines entry points.")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    workers: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1, le=1024)
    max_body_bytes: int = Field(MIB, ge=1, description="Largest request body accepted.")
    progress_per_second: float = Field(
        10.0, gt=0, description="Most progress events stored per second and run."
    )
    sse_ping_seconds: float = Field(15.0, gt=0)
    sse_retry_ms: int = Field(3000, ge=0, description="The retry: hint sent to SSE clients.")
    sse_send_timeout_seconds: float = Field(30.0, gt=0)
    page_size_default: int = Field(50, ge=1)
    page_size_max: int = Field(200, ge=1)
    poll_seconds: float = Field(1.0, gt=0, description="How often idle workers look for runs.")
    lease_seconds: float = Field(
        30.0, gt=0, description="How long a worker owns a run without renewing its lease."
    )
    max_recovery_attempts: int = Field(
        3, ge=0, description="Recoveries of one run before it ends failed."
    )
    graceful_shutdown_seconds: float = Field(10.0, ge=0)
    executor: Literal["local", "ray"] = Field(
        "local",
        description="Where runs execute: in this process (local) or on a Ray cluster (ray).",
    )
    ray_address: str | None = Field(
        None,
        description="The Ray cluster to execute runs on: host:port of its GCS (from a node of "
        "the cluster) or ray://host:port of its Ray Client server (from anywhere); unset: "
        "start a local Ray.",
    )

    auth: Literal["auto", "on", "off"] = Field(
        "auto",
        description="When keys are required: auto = as soon as a key exists or the server "
        "listens beyond loopback (see allow_open); on; off.",
    )
    allow_open: bool = Field(
        False, description="Serve beyond loopback without keys: the deployment is open."
    )
    key_cache_seconds: float = Field(
        10.0, ge=0, description="How long a verified key is trusted before it is checked again."
    )
    stream_token_secret: SecretStr | None = Field(
        None,
        description="Signs stream tokens; made once and kept in the database when not set.",
    )
    stream_token_seconds: float = Field(
        300.0, gt=0, le=300, description="How long a stream token stays valid."
    )
    runs_per_minute: int = Field(
        600, ge=0, description="Runs one key may create a minute (a burst of that many); 0: any."
    )
    max_streams_per_key: int = Field(
        20, ge=0, description="Event streams one key may hold open at once; 0: any."
    )
    max_queued_runs_per_key: int = Field(
        1000, ge=0, description="Queued runs one key may have; 0: any."
    )
    max_queued_runs_per_pipeline: int = Field(
        0, ge=0, description="Queued runs one pipeline may have; 0: any."
    )
    max_params_bytes: int = Field(
        64 * 1024, ge=1, description="Largest params document of a run, as JSON."
    )
    limit_concurrency: int = Field(
        10_000,
        ge=0,
        description="Connections and requests stepline serve handles at once (open event "
        "streams count) before it answers 503; keep it under the process's limit of open "
        "files. 0: any.",
    )
    request_timeout_seconds: float = Field(
        15.0,
        gt=0,
        description="How long stepline serve waits for a request's headers and body.",
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Origins (scheme://host[:port]) whose pages may call the API from a "
        "browser (comma-separated); none by default.",
    )

    @field_validator("ray_address", mode="before")
    @classmethod
    def _unset_if_empty(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("pipelines", "cors_origins", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("cors_origins")
    @classmethod
    def _explicit_origins(cls, origins: list[str]) -> list[str]:
        # A wildcard cannot go with credentials, and a pattern would let in more than meant.
        checked = []
        for origin in origins:
            origin = origin.rstrip("/")
            if not _ORIGIN.fullmatch(origin):
                raise ValueError(
                    f"{origin!r} is not an origin: CORS origins are listed one by one as "
                    "scheme://host[:port] (no *, no path)"
                )
            checked.append(origin)
        return checked
