"""``stepline serve``'s access lines read exactly as uvicorn's own."""

from __future__ import annotations

import logging

import pytest
from uvicorn.logging import AccessFormatter as UvicornAccessFormatter

from app.access_log import AccessFormatter, log_config

FMT = log_config()["formatters"]["access"]["fmt"]


def access_record(status: int, path: str = "/runs?status=queued") -> logging.LogRecord:
    return logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:50432", "POST", path, "1.1", status),
        None,
    )


@pytest.mark.parametrize("status", [200, 202, 404, 422, 500, 599])
@pytest.mark.parametrize("colours", [False, True])
def test_an_access_line_is_uvicorns(status: int, colours: bool) -> None:
    ours = AccessFormatter(FMT, use_colors=colours).format(access_record(status))
    theirs = UvicornAccessFormatter(FMT, use_colors=colours).format(access_record(status))

    assert ours == theirs
    if not colours:
        assert ours.startswith('INFO:     127.0.0.1:50432 - "POST /runs?status=queued HTTP/1.1"')


def test_serve_configures_it_for_access_lines_only() -> None:
    config = log_config()

    assert config["formatters"]["access"]["()"] == "app.access_log.AccessFormatter"
    assert config["formatters"]["default"]["()"] == "uvicorn.logging.DefaultFormatter"
    assert config["handlers"]["access"]["formatter"] == "access"
