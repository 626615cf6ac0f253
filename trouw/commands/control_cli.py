"""Operator commands: journeys in flight, pause, resume, cancel, customer pauses, status."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape
from rich.table import Table

from trouw.commands.terminal import (
    console,
    engine_or_fail,
    err,
    fail,
    settings_or_fail,
    verbatim,
    write_out,
)

if TYPE_CHECKING:
    from temporalio.client import Client

    from trouw.settings import Settings
    from trouw.stack.health import Health
    from trouw.stack.runs import JourneyOverview

journey_app = typer.Typer(
    help="Journeys in flight; pause, resume or cancel a journey's runs.", no_args_is_help=True
)
customer_app = typer.Typer(
    help="Pause or resume a customer's non-transactional messages.", no_args_is_help=True
)

REASON = typer.Option(None, "--reason", "-r", help="Why (kept in the ledger, shown by why).")


def _with_temporal(settings: Settings, work: Callable[[Client], Coroutine[Any, Any, Any]]) -> Any:
    """Connect to Temporal and run `work`; an unreachable server is one line and exit 1."""
    from temporalio.service import RPCError

    from trouw.domain.control import ControlError
    from trouw.stack.temporal import TemporalError, connect

    async def main() -> Any:
        client = await connect(settings, attempts=3)
        return await work(client)

    try:
        return asyncio.run(main())
    except (TemporalError, RPCError, ControlError) as exc:
        fail(str(exc))


@journey_app.command("list")
def journey_list(
    as_json: bool = typer.Option(False, "--json", help="Print one JSON array."),
) -> None:
    """Every journey: the version new runs get, paused or not, runs in flight per version and
    per step (from Temporal's visibility)."""
    from trouw.stack.health import catalog_versions
    from trouw.stack.runs import journey_overviews

    settings = settings_or_fail()
    engine = engine_or_fail(settings)
    catalog = catalog_versions(settings)
    rows: list[JourneyOverview] = _with_temporal(
        settings, lambda client: journey_overviews(client, engine, catalog)
    )
    if as_json:
        write_out(json.dumps([row.to_json() for row in rows], indent=2) + "\n")
        return
    table = Table(title="journeys", title_justify="left")
    for column in ("journey", "version", "state", "running", "recorded", "per version", "per step"):
        table.add_column(column, overflow="fold")
    for row in rows:
        state = "running"
        if row.paused:
            state = f"PAUSED since {row.paused['at']} by {row.paused['by']}"
            if row.paused.get("reason"):
                state += f" ({row.paused['reason']})"
        elif row.version is None:
            state = "not in the catalog"
        table.add_row(
            escape(row.journey),
            escape(row.version or "—"),
            escape(state),
            str(row.running),
            str(row.recorded_running),
            escape(", ".join(f"{v}: {n}" for v, n in row.versions.items()) or "—"),
            escape(", ".join(f"{s['version']}/{s['step']}: {s['runs']}" for s in row.steps) or "—"),
        )
    console.print(table)


def journeys_command(
    as_json: bool = typer.Option(False, "--json", help="Print one JSON array."),
) -> None:
    """Every journey with its runs in flight (the same as `trouw journey list`)."""
    journey_list(as_json)


def _known_journey(settings: Settings, journey: str) -> None:
    from trouw.stack.health import catalog_versions

    known = catalog_versions(settings)
    if journey not in known:
        fail(f"unknown journey {journey!r}; the journeys are: {', '.join(sorted(known)) or 'none'}")


def _set_journey(journey: str, reason: str | None, *, paused: bool) -> None:
    from trouw.domain.control import ControlError, cli_actor, set_journey_paused

    settings = settings_or_fail()
    if paused:
        _known_journey(settings, journey)
    engine = engine_or_fail(settings)
    from trouw.domain.db.engine import session_scope

    try:
        with session_scope(engine) as session:
            row = set_journey_paused(
                session,
                journey=journey,
                paused=paused,
                by=cli_actor(),
                at=datetime.now(UTC),
                reason=reason,
            )
    except ControlError as exc:
        fail(str(exc))
    word = "paused" if paused else "running"
    if row is None:
        verbatim(f"journey {journey} is already {word}; nothing changed", to=console)
        return
    if paused:
        hours = settings.journey_hold_hours
        verbatim(
            f"journey {journey} paused: no new runs; running runs hold their next message "
            f"(dropped after {hours:g} h held). Resume with `trouw journey resume {journey}`.",
            to=console,
        )
    else:
        verbatim(
            f"journey {journey} resumed: new runs start again; held messages go out at their "
            f"next check (within {settings.journey_hold_recheck_seconds:g} s).",
            to=console,
        )


@journey_app.command("pause")
def journey_pause(
    journey: str = typer.Argument(..., help="The journey name."), reason: str | None = REASON
) -> None:
    """Pause a journey: no new runs; running runs hold before their next send."""
    _set_journey(journey, reason, paused=True)


@journey_app.command("resume")
def journey_resume(
    journey: str = typer.Argument(..., help="The journey name."), reason: str | None = REASON
) -> None:
    """Resume a paused journey: new runs start again and held messages go out."""
    _set_journey(journey, reason, paused=False)


@journey_app.command("cancel")
def journey_cancel(
    journey: str = typer.Argument(..., help="The journey name."),
    customer: str | None = typer.Option(
        None, "--customer", "-c", help="Only this customer's runs."
    ),
    every: bool = typer.Option(False, "--all", help="Every running run of the journey."),
    reason: str | None = REASON,
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
) -> None:
    """Cancel one customer's runs of a journey (--customer) or all of them (--all)."""
    from trouw.domain.control import cli_actor
    from trouw.stack.runs import cancel_runs

    if (customer is None) == (not every):
        fail("say whose runs: --customer ID, or --all for every run of the journey", code=2)
    settings = settings_or_fail()
    engine = engine_or_fail(settings)
    if every and not yes:
        if not sys.stdin.isatty():
            fail("not a terminal: pass --yes to cancel every run of the journey")
        if not typer.confirm(f"Cancel every running run of {journey}?", default=False):
            fail("nothing cancelled")

    async def work(client: Client) -> Any:
        return await cancel_runs(
            client,
            engine,
            journey=journey,
            customer=customer,
            by=cli_actor(),
            reason=reason,
            now=datetime.now(UTC),
        )

    report = _with_temporal(settings, work)
    whose = f"customer {customer}'s" if customer else "all"
    for runs, what in (
        (report.cancelled, "running run(s) asked to cancel; their records follow as each ends"),
        (
            report.held,
            "run(s) inside the customer workflow (or held, not started yet), "
            "ended and recorded as cancelled",
        ),
    ):
        verbatim(f"{len(runs)} {what} ({journey}, {whose})", to=console)
        for workflow_id in runs:
            verbatim(f"  {workflow_id}", to=console)


def _set_customer(customer: str, reason: str | None, *, paused: bool) -> None:
    from trouw.domain.control import ControlError, cli_actor, set_contact_paused
    from trouw.domain.db.engine import session_scope
    from trouw.domain.db.models import Customer

    engine = engine_or_fail(settings_or_fail())
    try:
        with session_scope(engine) as session:
            if session.get(Customer, customer) is None:
                fail(f"unknown customer {customer!r}")
            row = set_contact_paused(
                session,
                customer_id=customer,
                paused=paused,
                by=cli_actor(),
                at=datetime.now(UTC),
                reason=reason,
            )
    except ControlError as exc:
        fail(str(exc))
    if row is None:
        word = "paused" if paused else "not paused"
        verbatim(f"customer {customer} is already {word}; nothing changed", to=console)
    elif paused:
        verbatim(
            f"customer {customer}: service and promotional messages paused (transactional "
            "ones still go out); resume with `trouw customer resume`",
            to=console,
        )
    else:
        verbatim(f"customer {customer}: messages resumed", to=console)


@customer_app.command("pause")
def customer_pause(
    customer: str = typer.Argument(..., help="The customer id."), reason: str | None = REASON
) -> None:
    """Pause every non-transactional message to a customer (a complaint), recorded."""
    _set_customer(customer, reason, paused=True)


@customer_app.command("resume")
def customer_resume(
    customer: str = typer.Argument(..., help="The customer id."), reason: str | None = REASON
) -> None:
    """Lift a customer's pause."""
    _set_customer(customer, reason, paused=False)


def status(as_json: bool = typer.Option(False, "--json", help="Print one JSON object.")) -> None:
    """The health of the whole system: journeys, Temporal, workers, relay, runs, messages (exit
    1 when unhealthy)."""
    from trouw.stack.health import catalog_state, gather

    settings = settings_or_fail()
    engine = engine_or_fail(settings)
    health = asyncio.run(gather(settings, engine, catalog=catalog_state(settings)))
    if as_json:
        write_out(json.dumps(health.to_json(), indent=2, ensure_ascii=False) + "\n")
    else:
        render_health(health)
    if not health.healthy:
        raise typer.Exit(1)


def render_health(health: Health) -> None:
    """One line per check (ok or FAIL), the lines behind it indented."""
    for check in health.checks:
        verbatim(f"{'ok  ' if check.ok else 'FAIL'}  {check.name}: {check.summary}", to=console)
        for line in check.details:
            verbatim(f"      {line}", to=console)
    verdict = "healthy" if health.healthy else "UNHEALTHY"
    err.print(f"{verdict} ({health.checked_at.isoformat(timespec='seconds')})", highlight=False)
