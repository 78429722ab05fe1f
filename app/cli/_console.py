"""The consoles ``stepline`` writes to, and the glyphs and styles they can show.

Colour follows the terminal and stops with ``NO_COLOR`` (any non-empty value) or
``TERM=dumb``: then no escape sequence of any kind is written, not only no colour. Status is
always spelled out or drawn with a glyph, so colour is never the only signal.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from rich.console import Console

__all__ = [
    "ASCII",
    "STYLES",
    "UNICODE",
    "Glyphs",
    "colour_allowed",
    "glyphs_for",
    "live_capable",
    "make_console",
]

# Output that is not a terminal is read by programs and people scrolling a log: lines are
# not cut to the 80 columns rich assumes there (COLUMNS still wins).
PIPE_WIDTH = 200


def colour_allowed(environ: Mapping[str, str] | None = None) -> bool:
    """False when ``NO_COLOR`` is set to anything or ``TERM`` is ``dumb``."""
    env = os.environ if environ is None else environ
    return not env.get("NO_COLOR") and env.get("TERM") != "dumb"


def make_console(*, stderr: bool = False) -> Console:
    """A console on stdout (or stderr) that prints text as given: no markup, no
    highlighting, no emoji codes, so names and messages from the server are shown verbatim."""
    console = Console(
        stderr=stderr,
        color_system="auto" if colour_allowed() else None,
        markup=False,
        highlight=False,
        emoji=False,
    )
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = PIPE_WIDTH
    return console


def live_capable(console: Console) -> bool:
    """Whether the console can redraw in place: a terminal, and not a ``dumb`` one (which
    cannot move its cursor). ``NO_COLOR`` asks for no colour only, so it does not count."""
    return console.is_terminal and not console.is_dumb_terminal


@dataclass(frozen=True)
class Glyphs:
    """One character per state, so that a status reads without colour."""

    succeeded: str
    failed: str
    rolled_back: str
    pending: str
    skipped: str
    cancelled: str
    running: str
    retrying: str
    progress: str
    bar_done: str
    bar_head: str
    bar_todo: str
    dot: str

    def status(self, status: str) -> str:
        """The glyph of a run, step or rollback status (``?`` for one this client does not
        know, from a newer server)."""
        return {
            "succeeded": self.succeeded,
            "failed": self.failed,
            "cancelled": self.cancelled,
            "cancelling": self.cancelled,
            "rolling_back": self.rolled_back,
            "rolled_back": self.rolled_back,
            "running": self.running,
            "queued": self.pending,
            "pending": self.pending,
            "not_needed": self.pending,
            "skipped": self.skipped,
            "not_supported": self.skipped,
        }.get(status, "?")


UNICODE = Glyphs("✓", "✗", "↺", "·", "\u2013", "⊘", "▶", "↻", "…", "━", "╸", "─", "·")
ASCII = Glyphs("+", "x", "<", ".", "-", "/", ">", "~", "~", "#", ">", "-", "|")


def glyphs_for(console: Console) -> Glyphs:
    """Unicode glyphs where the console's encoding has them, ASCII otherwise."""
    return UNICODE if console.encoding.lower().replace("-", "").startswith("utf") else ASCII


STYLES: dict[str, str] = {
    "succeeded": "green",
    "failed": "red",
    "cancelled": "yellow",
    "cancelling": "yellow",
    "rolling_back": "magenta",
    "rolled_back": "magenta",
    "running": "cyan",
    "queued": "dim",
    "pending": "dim",
    "skipped": "dim",
    "not_needed": "dim",
    "not_supported": "dim",
}
