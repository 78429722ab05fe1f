"""Keep credentials out of logs: uvicorn's access log writes every URL with its query,
and a stream token travels in one (``?token=``)."""

from __future__ import annotations

import logging
import re
from typing import Any

__all__ = ["SCRUBBED_LOGGERS", "SecretScrubber", "install_scrubbing", "scrub"]

SCRUBBED_LOGGERS = ("uvicorn.access", "uvicorn.error")
REDACTED = "[redacted]"
_SECRETS = re.compile(
    r"(?P<param>\btoken=)[^&\s\"']*"  # a query's token, whatever it holds
    r"|\bsl_(?P<key_id>[0-9a-f]{12})_[A-Za-z0-9_-]+"  # a key: keep its public id
    r"|\bslt_[A-Za-z0-9_.-]+"  # a stream token anywhere else
)


def _replace(match: re.Match[str]) -> str:
    if match["param"]:
        return match["param"] + REDACTED
    if match["key_id"]:
        return f"sl_{match['key_id']}_{REDACTED}"
    return REDACTED


def scrub(text: str) -> str:
    """``text`` with every token and key secret replaced by ``[redacted]``."""
    return _SECRETS.sub(_replace, text) if ("token=" in text or "sl" in text) else text


def _scrubbed(value: Any) -> Any:
    return scrub(value) if isinstance(value, str) else value


class SecretScrubber(logging.Filter):
    """Redacts tokens and keys in a record's message and arguments; drops nothing."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = scrub(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_scrubbed(arg) for arg in record.args)
        elif isinstance(record.args, dict):
            record.args = {name: _scrubbed(arg) for name, arg in record.args.items()}
        return True


def install_scrubbing(names: tuple[str, ...] = SCRUBBED_LOGGERS) -> None:
    """Put a ``SecretScrubber`` on each of these loggers (once)."""
    for name in names:
        logger = logging.getLogger(name)
        if not any(isinstance(f, SecretScrubber) for f in logger.filters):
            logger.addFilter(SecretScrubber())
