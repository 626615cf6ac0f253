"""`trouw loyalty sweep|adjust` (docs/loyalty.md)."""

from __future__ import annotations

from datetime import UTC, datetime

import typer

from trouw.commands.terminal import console, engine_or_fail, fail, settings_or_fail
from trouw.domain.db.engine import session_scope

app = typer.Typer(help="Loyalty: points and vouchers (docs/loyalty.md).", no_args_is_help=True)


@app.command()
def sweep() -> None:
    """Write the points expired by now and derive voucher_expiring events (the stack does this
    every 5 minutes; this runs one round at once). The relay hands the events off."""
    from trouw.domain.loyalty.ledger import configure_from
    from trouw.domain.loyalty.sweep import sweep as run_sweep

    settings = settings_or_fail()
    configure_from(settings)
    engine = engine_or_fail(settings)
    with session_scope(engine) as session:
        added = run_sweep(
            session, now=datetime.now(UTC), expiring_days=settings.voucher_expiring_days
        )
    console.print(f"{added} loyalty event(s) derived", highlight=False)


@app.command()
def adjust(
    customer: str = typer.Argument(..., help="The customer id."),
    points: int = typer.Option(..., "--points", help="Points to add (negative: to take)."),
    reason: str = typer.Option(..., "--reason", help="Why: kept in the ledger."),
) -> None:
    """An operator's correction of a customer's points, with its reason (never below zero)."""
    import uuid

    from trouw.domain.loyalty.ledger import (
        AdjustmentError,
        configure_from,
        derive_events,
        loyalty_dict,
    )
    from trouw.domain.loyalty.ledger import adjust as run_adjust

    settings = settings_or_fail()
    configure_from(settings)
    engine = engine_or_fail(settings)
    now = datetime.now(UTC)
    try:
        with session_scope(engine) as session:
            change = run_adjust(
                session,
                customer,
                points=points,
                reason=reason,
                at=now,
                key=f"adjust:cli:{uuid.uuid4().hex}",
                source="cli",
            )
            derive_events(session, change)
            state = loyalty_dict(session, customer, now=now)
    except (AdjustmentError, LookupError) as exc:
        fail(str(exc).strip("'\""))
    console.print(f"{customer}: {state['points']} points, level {state['level']}", highlight=False)
