"""Control characters in stored data never reach the operator's terminal: an order id holding ESC
sequences (stored before intake refused it, or by an import) shown by `trouw why`, as text and
as JSON, and the console's own colours kept."""

from __future__ import annotations

import io
import json
from datetime import timedelta

import pytest
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from tests.gdpr.conftest import T0, Seeded
from tests.gdpr.test_why import _app, cli  # noqa: F401 - cli is the fixture
from trouw.commands.terminal import SafeConsole, printable
from trouw.domain.db.engine import session_scope
from trouw.domain.db.models import JourneyRun, Message

# Clears the screen, moves home and writes in red; then a bidi override that reverses the rest.
ORDER = "o1\x1b[2J\x1b[H\x1b[31mPAID\x1b[0m\u202egnp.exe"
ERROR = "provider said \x1b]8;;http://evil.example\x07click\x1b]8;;\x07 and \x9b31m"


@pytest.fixture
def hostile(engine: Engine, seeded: Seeded) -> Seeded:
    with session_scope(engine) as session:
        session.add(
            JourneyRun(
                workflow_id=f"journey:{seeded.customer_id}:post_purchase:{ORDER}",
                customer_id=seeded.customer_id,
                journey="post_purchase",
                version="1",
                reentry_key=ORDER,
                event_source_id=f"{seeded.customer_id}-o1",
                started_at=T0 + timedelta(days=2),
                status="failed",
                ended_at=T0 + timedelta(days=2, minutes=1),
                end_reason=ERROR,
            )
        )
        session.add(
            Message(
                message_key=f"{seeded.customer_id}:post_purchase:{ORDER}:receipt",
                customer_id=seeded.customer_id,
                journey="post_purchase",
                journey_version="1",
                workflow_id=f"journey:{seeded.customer_id}:post_purchase:{ORDER}",
                step="receipt",
                channel="email",
                category="transactional",
                template="receipt",
                created_at=T0 + timedelta(days=2),
                state="failed",
                error=ERROR,
            )
        )
    return seeded


def _no_control(text: str) -> None:
    for bad in ("\x1b", "\x07", "\x9b", "\u202e"):
        assert bad not in text, f"{bad!r} reached the terminal"


def test_why_text_shows_escapes_not_sequences(cli: CliRunner, hostile: Seeded) -> None:  # noqa: F811
    result = cli.invoke(_app(), ["why", hostile.customer_id])  # type: ignore[arg-type]
    assert result.exit_code == 0, result.output
    _no_control(result.stdout)
    _no_control(result.stderr)
    # The operator still sees that the id holds them, and which.
    flat = result.stdout.replace("\n", "")
    assert "\\u001b[31mPAID" in flat
    assert "\\u202egnp.exe" in flat


def test_why_json_stays_json_and_decodes_to_the_stored_value(
    cli: CliRunner,  # noqa: F811
    hostile: Seeded,
) -> None:
    result = cli.invoke(_app(), ["why", hostile.customer_id, "--json"])  # type: ignore[arg-type]
    assert result.exit_code == 0, result.output
    _no_control(result.stdout)
    data = json.loads(result.stdout)
    keys = [message["message_key"] for message in data["messages"]]
    assert f"{hostile.customer_id}:post_purchase:{ORDER}:receipt" in keys
    errors = [message.get("error") for message in data["messages"]]
    assert ERROR in errors


def test_console_keeps_its_own_colours_and_escapes_the_data() -> None:
    buffer = io.StringIO()
    console = SafeConsole(file=buffer, force_terminal=True, color_system="standard", width=200)
    console.print(f"[red]order[/] {ORDER}", highlight=False)
    shown = buffer.getvalue()
    assert "\x1b[31morder" in shown  # Rich's styling: a real sequence
    assert "\x1b[2J" not in shown and "\\u001b[2J" in shown  # the data's: shown, not run


def test_printable_keeps_newlines_tabs_and_text() -> None:
    assert printable("Gazonmest 10 kg\n\tréduit €5") == "Gazonmest 10 kg\n\tréduit €5"
    assert printable("a\rb\x00c\x7fd") == "a\\u000db\\u0000c\\u007fd"
