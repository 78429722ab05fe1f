"""The configurations the service's contract tests run in.

- ``sqlite``: a SQLite file, runs executed by workers in the service's process;
- ``postgres``: a PostgreSQL database, runs executed in the service's process;
- ``scaleout``: a PostgreSQL database, runs executed on Ray (the session's local cluster,
  ``ray_cluster``), each in a Ray worker process that writes to the database itself.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.databases import BACKENDS

__all__ = ["CONFIGURATIONS", "executor_settings", "store_of"]

CONFIGURATIONS = (*BACKENDS, "scaleout")


def store_of(configuration: str) -> str:
    """The database backend of ``configuration`` (see ``tests.databases.database_url``)."""
    return "postgres" if configuration == "scaleout" else configuration


def executor_settings(configuration: str, request: pytest.FixtureRequest) -> dict[str, Any]:
    """The settings that say where ``configuration`` executes runs; for ``scaleout``, on
    the session's Ray, started when first asked for."""
    if configuration != "scaleout":
        return {}
    cluster = request.getfixturevalue("ray_cluster")
    return {"executor": "ray", "ray_address": cluster.address}
