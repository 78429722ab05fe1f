"""The dashboard's files ship in the package, and every file it loads is among them."""

from __future__ import annotations

import fnmatch
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STATIC = ROOT / "app" / "ui" / "static"


def assets() -> list[str]:
    return sorted(str(p.relative_to(ROOT / "app")) for p in STATIC.rglob("*") if p.is_file())


def test_every_asset_is_package_data_of_app() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = project["tool"]["setuptools"]["package-data"]["app"]

    shipped = [a for a in assets() if any(fnmatch.fnmatch(a, p) for p in patterns)]

    assert shipped == assets()
    assert "ui/static/index.html" in shipped


def test_the_shell_and_the_modules_load_only_files_that_exist() -> None:
    shell = (STATIC / "index.html").read_text(encoding="utf-8")
    loaded = re.findall(r'(?:src|href)="/ui/static/([^"]+)"', shell)
    imports = [
        name
        for module in STATIC.glob("*.js")
        for name in re.findall(r'from "\./([^"]+)"', module.read_text(encoding="utf-8"))
    ]

    assert {"main.js", "app.css", "favicon.svg"} <= set(loaded)
    assert [name for name in loaded + imports if not (STATIC / name).is_file()] == []


def test_the_pages_carry_no_inline_script_or_style() -> None:
    # The dashboard's Content-Security-Policy (default-src 'self') would refuse them.
    shell = (STATIC / "index.html").read_text(encoding="utf-8")

    assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", shell) == []
    assert re.findall(r"<style|\sstyle=|\son[a-z]+=", shell) == []
    for module in STATIC.glob("*.js"):
        text = module.read_text(encoding="utf-8")
        assert "innerHTML" not in text, module.name
        assert "eval(" not in text, module.name
