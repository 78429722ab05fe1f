"""What ``stepline`` exits with: the outcome of the run it followed, or why it could not."""

from __future__ import annotations

from enum import IntEnum

__all__ = ["ExitCode", "for_status"]


class ExitCode(IntEnum):
    """Exit statuses; a script can tell every outcome apart without reading the output."""

    succeeded = 0
    failed = 1  # the run failed (and rolled back)
    usage = 2  # the command line was wrong
    cancelled = 3
    api_error = 4  # the server answered with an error, or could not be reached
    timeout = 124  # --timeout passed; the run goes on (the code of timeout(1))
    interrupted = 130  # Ctrl-C: detached, the run goes on (128 + SIGINT)


_BY_STATUS = {
    "succeeded": ExitCode.succeeded,
    "failed": ExitCode.failed,
    "cancelled": ExitCode.cancelled,
}


def for_status(status: str) -> ExitCode:
    """The exit code for a finished run's ``status`` (an unfinished one counts as failed)."""
    return _BY_STATUS.get(status, ExitCode.failed)
