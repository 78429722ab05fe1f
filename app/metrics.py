"""Prometheus metrics of one app: runs by pipeline and status, step durations, queue depth,
open SSE streams."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Gauge, Histogram, generate_latest

from app.store.base import Store

__all__ = ["Metrics"]

STEP_DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)


class Metrics:
    """The app's own registry, so that two apps in one process never share counters."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.runs = Gauge(
            "stepline_runs", "Runs by pipeline and status.", ["pipeline", "status"],
            registry=self.registry,
        )  # fmt: skip
        self.queue_depth = Gauge(
            "stepline_queue_depth", "Runs queued and not yet started.", registry=self.registry
        )
        self.running = Gauge(
            "stepline_runs_executing", "Runs executing in this process.", registry=self.registry
        )
        self.sse_streams = Gauge(
            "stepline_sse_streams", "Open server-sent event streams.", registry=self.registry
        )
        self.step_duration = Histogram(
            "stepline_step_duration_seconds", "How long steps took, by pipeline and step.",
            ["pipeline", "step"], buckets=STEP_DURATION_BUCKETS, registry=self.registry,
        )  # fmt: skip

    def observe_step(self, pipeline: str, step: str, seconds: float) -> None:
        self.step_duration.labels(pipeline, step).observe(seconds)

    async def render(self, store: Store, executing: int) -> bytes:
        """The exposition text, with the run counts read from the store now."""
        counts = await store.count_runs()
        self.runs.clear()
        for (pipeline, status), count in counts.items():
            self.runs.labels(pipeline, status).set(count)
        self.queue_depth.set(sum(n for (_, status), n in counts.items() if status == "queued"))
        self.running.set(executing)
        return generate_latest(self.registry)
