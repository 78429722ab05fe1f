"""The dashboard at ``/ui``: static files shipped in the package, no build step.

Every page of the dashboard is the same shell (``index.html``), which routes on the client
with the history API; the shell is served for the dashboard's own paths only, so that a
missing script is a 404 and never an HTML page in its place. Assets are revalidated on every
load (``no-cache`` with an ETag), so an upgraded server never runs yesterday's scripts.
The dashboard calls nothing but the public HTTP API. None of this is in the OpenAPI
document.
"""

from __future__ import annotations

from importlib.resources import files
from typing import Any

from fastapi import APIRouter, FastAPI, Response
from starlette.staticfiles import StaticFiles

from app.api.headers import UI_PREFIX

__all__ = ["SHELL_PATHS", "install_dashboard"]

STATIC_DIRECTORY = "ui/static"  # inside the ``app`` package
SHELL_PATHS = (
    UI_PREFIX,
    f"{UI_PREFIX}/",
    f"{UI_PREFIX}/runs",
    f"{UI_PREFIX}/runs/{{run_id}}",
    f"{UI_PREFIX}/pipelines",
    f"{UI_PREFIX}/pipelines/{{name}}",
)
NO_CACHE = "no-cache"


class _Assets(StaticFiles):
    """Static files, revalidated on every use."""

    def file_response(self, *args: Any, **kwargs: Any) -> Response:
        response = super().file_response(*args, **kwargs)
        response.headers["Cache-Control"] = NO_CACHE
        return response


def install_dashboard(app: FastAPI) -> None:
    """Serve the dashboard's shell on its pages and its assets under ``/ui/static``."""
    shell = (files("app") / STATIC_DIRECTORY / "index.html").read_bytes()

    async def page() -> Response:
        return Response(shell, media_type="text/html", headers={"Cache-Control": NO_CACHE})

    router = APIRouter(include_in_schema=False)
    for path in SHELL_PATHS:
        router.add_api_route(path, page, methods=["GET", "HEAD"], name=f"dashboard:{path}")
    app.include_router(router)
    app.mount(
        f"{UI_PREFIX}/static",
        _Assets(packages=[("app", STATIC_DIRECTORY)]),
        name="dashboard-assets",
    )
