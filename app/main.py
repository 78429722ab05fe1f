"""Wiring: the one place where the app is assembled from settings.

``create_app(Settings(...))`` builds an app (tests build their own); ``app`` is the
module-level app built from ``STEPLINE_*`` environment variables, for ``uvicorn app.main:app``.
"""

from __future__ import annotations

import asyncio
import functools
import gc
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.types import ASGIApp

from app import __version__
from app.api.cors import CorsMiddleware
from app.api.create_lane import CreateRunLane
from app.api.deps import Services
from app.api.headers import SecurityHeadersMiddleware
from app.api.limits import BodyLimitMiddleware
from app.api.openapi import install_openapi
from app.api.problems import install_problem_handlers
from app.api.routes import health, pipelines, runs, stream_tokens, streams
from app.api.routes.dashboard import install_dashboard
from app.metrics import Metrics
from app.pipelines.catalog import Pipeline
from app.pipelines.loading import load_pipelines
from app.runs.bus import EventBus
from app.runs.executor import Executor
from app.runs.service import RunService
from app.runs.worker import WorkerPool
from app.security.auth import Authenticator
from app.security.keys import ApiKeys
from app.security.logs import install_scrubbing
from app.security.quotas import Quotas, RateLimiter, StreamSlots
from app.security.tokens import StreamTokens
from app.settings import Settings, SettingsError
from app.store import SqliteStore, Store, open_store

__all__ = ["create_app"]

DESCRIPTION = """\
Step pipelines as REST resources: start runs, follow their weighted progress live over
server-sent events, cancel them, and see for every step its status and its rollback status.
Errors are RFC 9457 problem details.
"""


def _operation_id(route: APIRoute) -> str:
    return route.name


class _SteplineApp(FastAPI):
    """FastAPI with ``CreateRunLane`` in front of its middleware stack."""

    create_lane: Callable[[ASGIApp], ASGIApp] | None = None

    def build_middleware_stack(self) -> ASGIApp:
        stack = super().build_middleware_stack()
        return stack if self.create_lane is None else self.create_lane(stack)


def _event_bus(store: Store) -> EventBus:
    """In-process on SQLite (one process serves it all); on PostgreSQL, one that sees the
    events of every replica sharing the database, told of their commits by ``LISTEN``."""
    if isinstance(store, SqliteStore):
        return EventBus()
    from app.store.postgres import PostgresStore  # asyncpg: only with the postgres extra

    if isinstance(store, PostgresStore):
        from app.runs.log_bus import LogEventBus
        from app.store.pg_listener import EventListener

        return LogEventBus(store, EventListener(store.dsn))
    return EventBus()


def _executor(
    settings: Settings, store: Store, bus: EventBus, catalog: dict[str, Pipeline], metrics: Metrics
) -> Executor:
    if settings.executor == "ray":
        return _ray_executor(settings, store, bus, catalog)
    return WorkerPool(
        store,
        bus,
        catalog,
        concurrency=settings.workers,
        poll_seconds=settings.poll_seconds,
        progress_interval=1 / settings.progress_per_second,
        lease_seconds=settings.lease_seconds,
        max_recovery_attempts=settings.max_recovery_attempts,
        on_step_finished=metrics.observe_step,
    )


def _ray_executor(
    settings: Settings, store: Store, bus: EventBus, catalog: dict[str, Pipeline]
) -> Executor:
    if not settings.database_url.startswith("postgresql+asyncpg://"):
        raise SettingsError(
            "STEPLINE_EXECUTOR=ray needs a PostgreSQL store "
            "(STEPLINE_DATABASE_URL=postgresql+asyncpg://user@host:5432/database): runs "
            "executing on Ray workers, in other processes or on other machines, write to the "
            "database themselves, and cannot share a SQLite file"
        )
    try:
        from app.runs.ray_executor import RayExecutor
        from app.runs.remote import WorkerSettings
        from app.store.leadership import Leadership
    except ImportError as exc:
        raise SettingsError(
            f"STEPLINE_EXECUTOR=ray needs Ray: pip install 'stepline[ray]' ({exc})"
        ) from exc
    return RayExecutor(
        store,
        bus,
        catalog,
        WorkerSettings.of(settings),
        # A frozen leader's session ends after two leases; it checks its lead 3 times a
        # lease, between sweeps that may take a while.
        Leadership(settings.database_url, idle_timeout=2 * settings.lease_seconds),
        address=settings.ray_address,
        concurrency=settings.workers,
        poll_seconds=settings.poll_seconds,
        lease_seconds=settings.lease_seconds,
    )


def create_app(settings: Settings | None = None) -> FastAPI:
    """An app serving the pipelines ``settings`` name, on the store it names."""
    settings = settings if settings is not None else Settings()
    catalog = load_pipelines(
        settings.pipelines,
        demos=settings.demo_pipelines,
        use_entry_points=settings.entry_points,
    )
    store = open_store(settings.database_url)
    bus = _event_bus(store)
    metrics = Metrics()
    workers = _executor(settings, store, bus, catalog, metrics)
    keys = ApiKeys(store, cache_seconds=settings.key_cache_seconds)
    auth = Authenticator(
        keys,
        settings.auth,
        host=settings.host,
        allow_open=settings.allow_open,
        tokens=StreamTokens(seconds=settings.stream_token_seconds),
    )
    token_secret = settings.stream_token_secret
    run_service = RunService(
        store,
        bus,
        workers,
        catalog,
        max_params_bytes=settings.max_params_bytes,
        max_queued_per_key=settings.max_queued_runs_per_key or None,
        max_queued_per_pipeline=settings.max_queued_runs_per_pipeline or None,
    )
    quotas = Quotas(
        RateLimiter(settings.runs_per_minute or None),
        StreamSlots(settings.max_streams_per_key or None),
    )
    services = Services(settings, store, bus, run_service, metrics, auth, quotas)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await store.start()
        try:
            await auth.start(None if token_secret is None else token_secret.get_secret_value())
            await bus.start()  # before the workers, whose events it must deliver
        except BaseException:
            await store.close()
            raise
        services.loop = asyncio.get_running_loop()
        await workers.start()
        # Everything built so far lives as long as the process: keep it out of the garbage
        # collector's full passes, whose pauses otherwise set the tail latency of streams.
        gc.freeze()
        try:
            yield
        finally:
            services.begin_shutdown()
            await workers.stop(settings.graceful_shutdown_seconds)
            await bus.stop()
            await store.close()

    app = _SteplineApp(
        title="Stepline",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        generate_unique_id_function=_operation_id,
    )
    app.state.services = services
    app.create_lane = functools.partial(
        CreateRunLane, services=services, max_body_bytes=settings.max_body_bytes
    )
    install_scrubbing()
    install_problem_handlers(app)
    install_openapi(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    if settings.cors_origins:
        app.add_middleware(CorsMiddleware, origins=settings.cors_origins)
    app.add_middleware(SecurityHeadersMiddleware)  # the outermost: on every answer
    for module in (pipelines, runs, streams, stream_tokens, health):
        app.include_router(module.router)
    install_dashboard(app)
    return app


def __getattr__(name: str) -> Any:
    # Built on first access, so that importing this module has no side effects.
    if name == "app":
        application = create_app()
        globals()["app"] = application
        return application
    raise AttributeError(f"module 'app.main' has no attribute {name!r}")
