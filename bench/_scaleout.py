"""What the scale-out benchmarks share: a fresh PostgreSQL database, a local Ray head, and
``stepline serve`` on them.

The PostgreSQL server is named by ``STEPLINE_BENCH_POSTGRES`` (a ``postgresql://`` URL of a
database the role can connect to and create databases from; by default the one the tests
use, 127.0.0.1:5432 as ``postgres``). Each benchmark creates databases of its own and drops
them after. The Ray head is ``ray start --head --block`` in a process of its own, with a
token of its own (``tests/raycluster.py``, as the tests start it), stopped with all its
processes afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import sys
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

from _harness import PROJECT_ROOT, stepline

if str(PROJECT_ROOT) not in sys.path:  # tests.* is not installed
    sys.path.insert(0, str(PROJECT_ROOT))

POSTGRES = os.environ.get("STEPLINE_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
CONNECT_TIMEOUT_S = 10.0


async def _admin(sql: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(POSTGRES, timeout=CONNECT_TIMEOUT_S)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


def unavailable(*, ray: bool = False) -> str | None:
    """Why the benchmark cannot run here (no PostgreSQL server, no asyncpg or Ray), or None."""
    try:
        import asyncpg  # noqa: F401
    except ImportError:
        return "asyncpg is not installed (pip install 'stepline[postgres]')"
    if ray:
        try:
            import ray as _ray  # noqa: F401
        except ImportError:
            return "Ray is not installed (pip install 'stepline[ray]')"
    try:
        asyncio.run(_admin("SELECT 1"))
    except Exception as exc:  # whatever keeps the server out of reach
        return f"PostgreSQL at {POSTGRES} is not reachable (STEPLINE_BENCH_POSTGRES): {exc!r}"
    return None


@contextlib.contextmanager
def database() -> Iterator[str]:
    """The ``STEPLINE_DATABASE_URL`` of a new, empty database, dropped afterwards."""
    from sqlalchemy.engine import make_url

    name = f"stepline_bench_{uuid.uuid4().hex[:16]}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    try:
        url = make_url(POSTGRES).set(drivername="postgresql+asyncpg", database=name)
        yield url.render_as_string(hide_password=False)
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@contextlib.contextmanager
def ray_head(directory: Path, cpus: int) -> Iterator[tuple[str, dict[str, str]]]:
    """A local Ray head of ``cpus`` logical CPUs: its address, and the environment a server
    needs to join it (its token)."""
    from tests.raycluster import ray_head as start_head

    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    with start_head(directory, cpus=cpus, env=auth) as head:
        yield head.address, auth


def stepline_on(
    tmp: Path,
    name: str,
    url: str,
    pipelines: Sequence[str],
    settings: dict[str, str],
) -> tuple[list[str], dict[str, str], Path]:
    """What ``_harness.serving`` needs to run ``stepline serve`` on the database ``url``,
    with ``settings`` (``STEPLINE_*`` and any other variables) on top."""
    argv, env, _log = stepline(tmp / name, pipelines=pipelines)
    env.update({"STEPLINE_DATABASE_URL": url, **settings})
    return argv, env, tmp / f"{name}.log"
