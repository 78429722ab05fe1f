"""The peers the benchmarks compare Stepline with, each in its own virtualenv.

Every peer is one PyPI package at a pinned version, installed into ``bench/.venvs/NAME``
(git-ignored) with the interpreter it needs. ``install`` makes the virtualenv when it is
missing and installs the pin when the virtualenv does not hold it; ``unavailable`` says why
a benchmark cannot use a peer, without installing anything. Install them all with::

    .venv/bin/python bench/_peers.py
"""

from __future__ import annotations

import glob
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from _harness import BENCH_DIR, PROJECT_ROOT

VENVS = BENCH_DIR / ".venvs"
CHECK_TIMEOUT_S = 30.0
VENV_TIMEOUT_S = 120.0
INSTALL_TIMEOUT_S = 900.0


@dataclass(frozen=True)
class Peer:
    """A package at a pinned version, in ``bench/.venvs/<name>``."""

    name: str
    package: str
    version: str
    python: str | None = None
    """The ``major.minor`` it needs; ``None``: the interpreter running this module."""

    @property
    def venv(self) -> Path:
        return VENVS / self.name

    @property
    def interpreter(self) -> Path:
        return self.venv / "bin" / "python"

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"

    def installed_version(self) -> str | None:
        """The package's version in the virtualenv, or ``None`` if it cannot be read."""
        return self._ask(f"import importlib.metadata as m; print(m.version({self.package!r}))")

    def python_version(self) -> str | None:
        """The virtualenv's Python version, or ``None``."""
        return self._ask("import platform; print(platform.python_version())")

    def _ask(self, code: str) -> str | None:
        if not self.interpreter.exists():
            return None
        done = _run([str(self.interpreter), "-c", code], CHECK_TIMEOUT_S)
        return done.stdout.strip() if done is not None and done.returncode == 0 else None

    def unavailable(self) -> str | None:
        """Why the peer cannot be used as it is, or ``None`` if it can."""
        found = self.installed_version()
        if found == self.version:
            return None
        where = self.venv.relative_to(PROJECT_ROOT)
        hint = f"install it with: .venv/bin/python bench/_peers.py {self.name}"
        if found is None:
            return f"{self.requirement} is not installed in {where}; {hint}"
        return f"{where} holds {self.package} {found}, not {self.version}; {hint}"


SYNAPSE = Peer("synapse", "synapse-sdk", "2026.2.17", python="3.12")
DBOS = Peer("dbos", "dbos", "3.4.0")
PEERS = {peer.name: peer for peer in (SYNAPSE, DBOS)}


def _run(command: list[str], timeout: float) -> subprocess.CompletedProcess[str] | None:
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None


def _runs(python: str) -> bool:
    done = _run([python, "--version"], CHECK_TIMEOUT_S)
    return done is not None and done.returncode == 0


def find_python(minor: str | None) -> str | None:
    """An interpreter of version ``minor``: ``pythonX.Y`` on the PATH or else one that pyenv
    installed (its shim on the PATH may refuse to run one that is not selected)."""
    if minor is None:
        return sys.executable
    candidates = [f"python{minor}"]
    if shutil.which("pyenv") is not None:
        done = _run(["pyenv", "root"], CHECK_TIMEOUT_S)
        if done is not None and done.returncode == 0:
            pattern = f"{done.stdout.strip()}/versions/{minor}.*/bin/python{minor}"
            candidates += sorted(glob.glob(pattern), reverse=True)
    return next((c for c in candidates if _runs(c)), None)


def _failure(what: str, done: subprocess.CompletedProcess[str] | None, timeout: float) -> str:
    if done is None:
        return f"{what} did not finish within {timeout:g} s"
    last = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()[-1]
    return f"{what} failed ({done.returncode}): {last}"


def install(peer: Peer) -> str | None:
    """Make the peer usable; ``None`` once it is, else why it could not be."""
    if peer.installed_version() == peer.version:
        return None
    if not peer.interpreter.exists():
        python = find_python(peer.python)
        if python is None:
            return f"no working python{peer.python} to make {peer.venv.name}'s virtualenv"
        done = _run([python, "-m", "venv", str(peer.venv)], VENV_TIMEOUT_S)
        if done is None or done.returncode != 0:
            return _failure("python -m venv", done, VENV_TIMEOUT_S)
    command = [str(peer.interpreter), "-m", "pip", "install", "--quiet",
               "--disable-pip-version-check", peer.requirement]  # fmt: skip
    done = _run(command, INSTALL_TIMEOUT_S)
    if done is None or done.returncode != 0:
        return _failure(f"pip install {peer.requirement}", done, INSTALL_TIMEOUT_S)
    return peer.unavailable()


def main(argv: list[str] | None = None) -> int:
    names = (sys.argv[1:] if argv is None else argv) or list(PEERS)
    failed = 0
    for name in names:
        peer = PEERS.get(name)
        reason = install(peer) if peer is not None else f"no peer named {name!r}"
        failed += reason is not None
        print(f"{name}: {'ready' if reason is None else 'skipped (' + reason + ')'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
