"""The package exports what it documents, and ``import steps`` stays light."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import steps

HEAVY = ("pydantic", "fastapi", "starlette", "sqlalchemy", "app", "asyncio")


def test_all_is_sorted_and_every_name_resolves() -> None:
    assert steps.__all__ == sorted(steps.__all__, key=lambda n: (not n.isupper(), n))
    for name in steps.__all__:
        assert getattr(steps, name) is not None


def test_unknown_attributes_raise_attribute_error() -> None:
    with pytest.raises(AttributeError, match="Nope"):
        steps.Nope


def loaded_after(code: str) -> list[str]:
    probe = f"{code}; import sys, json; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def test_import_steps_loads_no_web_database_pydantic_app_or_asyncio() -> None:
    modules = loaded_after("import steps")

    assert [m for m in modules if m.split(".")[0] in HEAVY] == []


def test_actions_load_pydantic_on_first_use_only() -> None:
    modules = loaded_after("from steps import BaseAction")

    assert "pydantic" in modules
    assert "fastapi" not in modules
    assert "app" not in modules
