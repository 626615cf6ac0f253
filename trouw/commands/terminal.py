"""What every `trouw` command shares: the consoles, one-line errors, settings and the database."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.segment import Segment
from sqlalchemy.engine import Engine

from trouw.settings import Settings, SettingsError, load_settings

# Every control character but newline and tab (C0, DEL, C1), and the bidirectional overrides and
# isolates that reorder what a terminal shows (CVE-2021-42574, "Trojan Source").
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    """`text` with each control character shown as its escape (`\\u001b`), never executed.

    Data (an order id, a provider's error) reaches the operator's terminal through every command;
    an ESC sequence in it could recolour, hide or rewrite what the operator reads. The escape is
    also valid inside a JSON string, so JSON output stays JSON and decodes to the stored value.
    """
    return _CONTROL.sub(lambda found: f"\\u{ord(found.group()):04x}", text)


class SafeConsole(Console):
    """A Rich console whose text is made printable: the one door of every command's output.

    Rich's own styling (colour, bold) is added after the text, so it still shows; only control
    characters coming with the content are escaped, in plain strings and in tables alike.
    """

    def _render_buffer(self, buffer: Iterable[Segment]) -> str:
        return super()._render_buffer(
            segment if segment.control else Segment(printable(segment.text), segment.style)
            for segment in buffer
        )


def write_out(text: str) -> None:
    """Write text (JSON, an export) to stdout as it is, control characters made printable."""
    sys.stdout.write(printable(text))


# Piped output (CI, files) gets a wide console, so tables are not squeezed to 80 columns.
console = SafeConsole(width=None if sys.stdout.isatty() else 200)
err = SafeConsole(stderr=True, width=None if sys.stderr.isatty() else 200)


def fail(message: str, code: int = 1) -> NoReturn:
    """One line `error: ...` on stderr and the exit code (2: a bad setting, 1: anything else)."""
    err.print(f"[red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def verbatim(text: str, *, to: Console | None = None) -> None:
    """Print text exactly as it is: no markup (Rich would eat `[a-z]`), no colouring, no wrap."""
    (to or err).print(text, markup=False, highlight=False, soft_wrap=True)


def settings_or_fail(**overrides: Any) -> Settings:
    try:
        return load_settings(**overrides)
    except SettingsError as exc:
        fail(str(exc), 2)


def engine_or_fail(settings: Settings) -> Engine:
    from trouw.domain.db.engine import DatabaseError, get_engine

    try:
        return get_engine(settings.effective_database_url)
    except DatabaseError as exc:
        fail(str(exc))


def exit_now(code: int) -> NoReturn:
    """Leave at once after flushing: the Temporal client can crash at interpreter exit
    (sdk-python issue 300), so every command ends here (trouw.commands.cli.main)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
