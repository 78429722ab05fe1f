"""What ``stepline run`` reads from its command line: parameters, labels, a timeout.

Errors are ``typer.BadParameter``, which ends the command with exit code 2 and the usage.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import typer

__all__ = ["parse_duration", "parse_labels", "parse_params", "read_params_file"]

_DURATION = re.compile(
    r"(?:(?P<h>\d+(?:\.\d+)?)h)?(?:(?P<m>\d+(?:\.\d+)?)m)?(?:(?P<s>\d+(?:\.\d+)?)s?)?"
)


def _pairs(items: Iterable[str], option: str) -> Iterable[tuple[str, str]]:
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"{item!r} is not key=value", param_hint=option)
        yield key.strip(), value


def parse_value(text: str) -> Any:
    """``text`` as JSON when it parses (``3``, ``0.5``, ``true``, ``null``, ``[1, 2]``,
    ``{"a": 1}``, ``"quoted"``), else the text itself: ``-p name=alice`` is a string."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_params(items: Iterable[str], base: dict[str, Any] | None = None) -> dict[str, Any]:
    """``-p k=v`` options over the parameters of ``base`` (a params file): the last wins."""
    params = dict(base or {})
    for key, value in _pairs(items, "-p"):
        params[key] = parse_value(value)
    return params


def read_params_file(path: str) -> dict[str, Any]:
    """A JSON object from ``path``, or from standard input for ``-``."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise typer.BadParameter(
            f"cannot read {path}: {exc.strerror}", param_hint="--params-file"
        ) from exc
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise typer.BadParameter(f"{path} is not JSON: {exc}", param_hint="--params-file") from exc
    if not isinstance(value, dict):
        raise typer.BadParameter(f"{path} must hold a JSON object", param_hint="--params-file")
    return value


def parse_labels(items: Iterable[str], option: str = "--label") -> dict[str, str]:
    """``--label k=v`` options; labels are strings, taken as written."""
    return dict(_pairs(items, option))


def parse_duration(text: str | None) -> float | None:
    """Seconds from ``90``, ``90s``, ``10m``, ``1h``, ``1m30s`` or ``1.5h``; ``None`` for none."""
    if text is None:
        return None
    match = _DURATION.fullmatch(text.strip())
    if not text.strip() or match is None or not any(match.groupdict().values()):
        raise typer.BadParameter(f"{text!r} is not a duration such as 90s, 10m or 1h")
    parts = {k: float(v) for k, v in match.groupdict().items() if v}
    seconds = parts.get("h", 0) * 3600 + parts.get("m", 0) * 60 + parts.get("s", 0)
    if seconds <= 0:
        raise typer.BadParameter(f"{text!r} is not a positive duration")
    return seconds
