"""The `trouw why`, `trouw export` and `trouw forget` commands (registered by trouw.commands.cli)."""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

import typer
from sqlmodel import Session

from trouw.commands.terminal import console, engine_or_fail, err, fail, settings_or_fail, write_out
from trouw.domain import gdpr
from trouw.domain.db.models import Customer
from trouw.domain.why import UnknownCustomerError, explain, reconcile_with_temporal, render

_settings = settings_or_fail
_engine = engine_or_fail


def _interactive() -> bool:
    return sys.stdin.isatty()


def why(
    customer: str = typer.Argument(..., help="The customer id."),
    journey: str | None = typer.Option(None, "--journey", "-j", help="Only this journey."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Why did (or didn't) a customer get a message: decisions, consent, provider status."""
    settings = _settings()
    engine = _engine(settings)
    with Session(engine) as session:
        try:
            explanation = explain(session, customer, journey=journey)
        except UnknownCustomerError as exc:
            fail(str(exc))
    # A run that was terminated or timed out in Temporal could not record it: ask Temporal.
    explanation, note = asyncio.run(reconcile_with_temporal(explanation, settings))
    if note:
        err.print(note, highlight=False, soft_wrap=True, markup=False)
    if as_json:
        write_out(json.dumps(explanation.to_json(), indent=2, ensure_ascii=False) + "\n")
    else:
        render(explanation, console)


def export(
    customer: str = typer.Argument(..., help="The customer id."),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Write to this file (default: stdout)."
    ),
) -> None:
    """Everything held about a customer as one JSON document, with the consent proof."""
    engine = _engine(_settings())
    with Session(engine) as session:
        try:
            document = gdpr.export(session, customer_id=customer)
        except UnknownCustomerError as exc:
            fail(str(exc))
    text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    if out is None:
        write_out(text)
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    out.chmod(0o600)  # it is personal data: readable by the operator only
    err.print(f"export of {customer} written to {out}", highlight=False)


def forget(
    customer: str = typer.Argument(..., help="The customer id."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
) -> None:
    """Erase a customer: stop their workflows, clear personal data, keep proof and suppressions."""
    settings = _settings()
    engine = _engine(settings)
    with Session(engine) as session:
        row = session.get(Customer, customer)
        if row is None:
            fail(f"unknown customer {customer!r}")
        if row.erased:
            console.print(
                f"customer {customer} was already erased on {row.updated_at.isoformat()}; "
                "nothing to do",
                highlight=False,
                soft_wrap=True,
            )
            return
    if not yes:
        if not _interactive():
            fail("not a terminal: pass --yes to erase without confirmation")
        if not typer.confirm(
            f"Erase customer {customer}? Personal data is cleared for good", default=False
        ):
            fail("nothing erased")
    from temporalio.service import RPCError

    from trouw.stack.temporal import TemporalError

    try:
        report = asyncio.run(
            gdpr.forget(
                engine,
                customer_id=customer,
                cancel=gdpr.temporal_canceller(settings),
                delete=gdpr.temporal_deleter(settings),
                now=datetime.now(UTC),
            )
        )
    except UnknownCustomerError as exc:
        fail(str(exc))
    except (TemporalError, RPCError) as exc:
        # Workflows are stopped before the data is touched, so a failure here erased nothing.
        fail(f"cannot terminate the customer's workflows: {exc}; nothing was erased")
    for line in report.lines():
        console.print(line, highlight=False, soft_wrap=True)
