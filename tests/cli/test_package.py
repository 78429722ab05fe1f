"""The shape of ``app.cli``: what it exports, and that its client commands stay clients."""

from __future__ import annotations

import subprocess
import sys

import app.cli
from tests.app.processes import ROOT

SERVICE_MODULES = ("fastapi", "starlette", "sqlalchemy", "uvicorn", "app.main", "app.store",
                   "app.runs", "app.api")  # fmt: skip


def test_the_package_exports_a_sorted_public_list() -> None:
    assert app.cli.__all__ == sorted(app.cli.__all__, key=lambda n: (not n.isupper(), n))
    for name in app.cli.__all__:
        assert getattr(app.cli, name) is not None


def test_the_client_commands_load_none_of_the_service() -> None:
    # They reach a server over HTTP only, and start without loading the app.
    code = (
        "import sys; from app.cli import main; main(['runs', '--help']); "
        f"print(sorted(m for m in {SERVICE_MODULES!r} if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "[]"
