"""What every `trouw` command shares: the consoles, one-line errors, settings and the database."""

from __future__ import annotations

import os
import sys
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from sqlalchemy.engine import Engine

from trouw.settings import Settings, SettingsError, load_settings

# Piped output (CI, files) gets a wide console, so tables are not squeezed to 80 columns.
console = Console(width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 200)


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
    from trouw.db.engine import DatabaseError, get_engine

    try:
        return get_engine(settings.effective_database_url)
    except DatabaseError as exc:
        fail(str(exc))


def exit_now(code: int) -> NoReturn:
    """Leave at once after flushing: the Temporal client can crash at interpreter exit
    (sdk-python issue 300), so every command ends here (trouw.cli.main)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
