"""`trouw report ...`: uplift per split and the arm plan for a list of customers."""

from __future__ import annotations

import csv
import io
import json
import sys
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import typer

from trouw.commands.terminal import console, engine_or_fail, fail, settings_or_fail, verbatim
from trouw.language.journey.durations import DurationError, parse_duration

app = typer.Typer(help="What journeys achieve: funnel, attribution, splits and uplift.")
DEFAULT_PERIOD = timedelta(days=30)


def period(start: datetime | None, end: datetime | None) -> tuple[datetime, datetime]:
    """The report's period: up to now and the 30 days before, unless told otherwise."""
    end = end or datetime.now(UTC)
    return (start or end - DEFAULT_PERIOD), end


@app.callback(invoke_without_command=True)
def report(
    ctx: typer.Context,
    journey: str | None = typer.Option(None, "--journey", help="Only this journey."),
    start: str | None = typer.Option(None, "--from", help="From this date (default: 30 days ago)."),
    end: str | None = typer.Option(None, "--to", help="Up to this date (default: now)."),
    output: str = typer.Option("table", "--format", help="table or json."),
    html: Path | None = typer.Option(None, "--html", help="Also write report.html to this folder."),
    segments: bool = typer.Option(
        False, "--segments", help="Also split each step's funnel by the customers' segment."
    ),
) -> None:
    """Funnel per journey, version and step, and the orders and revenue attributed to messages."""
    if ctx.invoked_subcommand is not None:
        return
    from trouw.domain.db.engine import READ_ONLY
    from trouw.domain.measure.report import attribution_rules, journey_report

    if output not in ("table", "json"):
        fail(f"--format {output!r}: table or json")
    settings = settings_or_fail()
    begin, until = period(_day(start, "--from"), _day(end, "--to"))
    if begin >= until:
        fail("--from must be before --to")
    engine = engine_or_fail(settings)
    # Only reads (the worker folds the roll-ups' deltas): on SQLite it takes no write lock.
    with engine.connect().execution_options(**{READ_ONLY: True}) as connection:
        found = journey_report(
            connection,
            attribution_rules(settings),
            start=begin,
            end=until,
            journey=journey,
            segments=segments,
        )
    body = found.to_json()
    if html is not None:
        from trouw.domain.db.engine import read_scope
        from trouw.domain.measure.html import write_report
        from trouw.domain.measure.splits import split_steps, uplift_report

        with read_scope(engine) as session:
            uplifts = [
                uplift_report(session, journey=j, step=st, start=begin, end=until).to_json()
                for j, st in split_steps(session, journey=journey, start=begin, end=until)
            ]
        path = write_report(html, body, uplifts)
        verbatim(f"report written to {path}")
    if output == "json":
        sys.stdout.write(json.dumps(body, indent=2) + "\n")
        return
    print_report(body)


def print_report(body: dict[str, Any]) -> None:
    from rich.table import Table

    from trouw.domain.measure.engagement import ENGAGEMENT_KINDS

    verbatim(f"{body['from']} to {body['to']}", to=console)
    if not body["journeys"]:
        verbatim("no journey ran in this period", to=console)
    for j in body["journeys"]:
        verbatim(
            f"{j['journey']} (version {j['version'] or '?'}): entered {j['entered']}, converted "
            f"{j['converted']}, held out {j['held_out']}, attributed orders {j['orders']}, "
            f"revenue {j['revenue']:,.2f}",
            to=console,
        )
        for goal in j.get("goals", []):
            worth = f", worth {goal['value']:,.2f}" if goal["valued"] else ""
            verbatim(f"  goal {goal['goal']}: {goal['conversions']} conversions{worth}", to=console)
        table = Table()
        columns = (
            "step",
            "channel",
            "eligible",
            "sent",
            "suppressed",
            "deferred",
            *ENGAGEMENT_KINDS,
            "orders",
            "revenue",
        )
        for column in columns:
            table.add_column(column, justify="left" if column in ("step", "channel") else "right")
        for st in j["steps"]:
            suppressed = sum(st["suppressed"].values())
            reasons = ", ".join(f"{r} {n}" for r, n in sorted(st["suppressed"].items()))
            table.add_row(
                st["step"],
                st["channel"],
                str(st["eligible"]),
                str(st["sent"]),
                f"{suppressed}" + (f" ({reasons})" if reasons else ""),
                str(st["deferred"]),
                *(str(st[kind]) for kind in ENGAGEMENT_KINDS),
                str(st["orders"]),
                f"{st['revenue']:,.2f}",
            )
        if j["steps"]:
            console.print(table)
    methods = ", ".join(f"{m} {n}" for m, n in sorted(body["methods"].items())) or "none"
    verbatim(f"attributed orders: {body['attributed_orders']} ({methods})", to=console)
    if body.get("segments") is not None:
        print_segments(body["segments"])


def print_segments(rows: list[dict[str, Any]]) -> None:
    """The funnel per segment: one row per journey, step, channel and segment."""
    from rich.table import Table

    table = Table(title="funnel per segment (the customer's segment when the message was made)")
    columns = ("journey", "step", "channel", "segment", "sent", "delivered", "opened", "clicked")
    for column in (*columns, "orders", "revenue"):
        table.add_column(column, justify="left" if column in columns[:4] else "right")
    for r in rows:
        table.add_row(
            r["journey"],
            r["step"],
            r["channel"],
            r["segment"],
            *(str(r[name]) for name in ("sent", "delivered", "opened", "clicked", "orders")),
            f"{r['revenue']:,.2f}",
        )
    if rows:
        console.print(table)
    else:
        verbatim("funnel per segment: no messages in this period", to=console)


def _day(value: str | None, option: str) -> datetime | None:
    """A date (midnight UTC; for --to the midnight after it, so the day counts) or an ISO
    timestamp with its offset."""
    if value is None:
        return None
    try:
        if len(value) == 10:
            day = date.fromisoformat(value) + timedelta(days=1 if option == "--to" else 0)
            return datetime.combine(day, time(0), tzinfo=UTC)
        moment = datetime.fromisoformat(value)
    except ValueError:
        fail(f"{option} {value!r}: not a date (2026-03-01) or timestamp with offset")
    if moment.tzinfo is None:
        fail(f"{option} {value!r}: a timestamp needs its offset (+01:00 or Z)")
    return moment


def _read_customers(path: Path) -> list[str]:
    """One id per line, or a CSV whose header has a `customer_id` (or `id`) column."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        fail(f"{path}: {exc.strerror or exc}")
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return []
    header = next(csv.reader([lines[0]]))
    names = [h.strip().lower() for h in header]
    for column in ("customer_id", "id", "customer"):
        if column in names:
            at = names.index(column)
            rows = csv.reader(lines[1:])
            return [row[at].strip() for row in rows if len(row) > at and row[at].strip()]
    if len(header) > 1:
        fail(f"{path}: a CSV needs a customer_id column")
    return [line.strip() for line in lines]


@app.command("split")
def split_command(
    journey: str = typer.Argument(..., help="Journey name."),
    step: str = typer.Argument(..., help="The split step's id."),
    customers: Path = typer.Option(..., "--customers", help="Customer ids, one a line, or CSV."),
    output: str = typer.Option("csv", "--format", help="csv (the only format)."),
    baseline: float = typer.Option(
        0.05, "--baseline", min=0.0, max=1.0, help="Expected conversion rate, for the MDE."
    ),
    journeys: Path | None = typer.Option(
        None, "--journeys", help="Journeys folder (default: the configured one)."
    ),
) -> None:
    """The arm each listed customer would get (customer_id,arm), for planning a test."""
    from trouw.domain.measure.splits import ReportError, find_journey, plan, split_step
    from trouw.domain.measure.uplift import planned_conversion_mde

    if output != "csv":
        fail(f"--format {output!r}: only csv")
    settings = settings_or_fail()
    try:
        found = find_journey(journeys or settings.journeys_dir, journey)
        split = split_step(found, step)
    except ReportError as exc:
        fail(str(exc))
    rows = plan(found, split, _read_customers(customers))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["customer_id", "arm"])
    writer.writerows(rows)
    sys.stdout.write(out.getvalue())
    counts = {arm.name: sum(1 for _c, a in rows if a == arm.name) for arm in split.split}
    verbatim(", ".join(f"{name}: {n}" for name, n in counts.items()))
    held = [a.name for a in split.split if a.holdout]
    reference = held[0] if held else split.split[0].name
    for arm in split.split:
        if arm.name == reference:
            continue
        detectable = planned_conversion_mde(baseline, counts[arm.name], counts[reference])
        if detectable is None:
            verbatim(f"{arm.name} vs {reference}: no customers in one arm, nothing to detect")
        else:
            verbatim(
                f"{arm.name} vs {reference}: smallest detectable conversion difference "
                f"{detectable * 100:.1f} points at a {baseline * 100:.0f} % baseline "
                f"(5 % significance, 80 % power)"
            )


@app.command("uplift")
def uplift_command(
    journey: str = typer.Argument(..., help="Journey name."),
    step: str | None = typer.Argument(None, help="Split step id (default: the only split)."),
    start: str | None = typer.Option(None, "--from", help="Splits on or after this date."),
    end: str | None = typer.Option(None, "--to", help="Splits before this date."),
    window: str = typer.Option("30d", "--window", help="Conversions this long after the split."),
    output: str = typer.Option("table", "--format", help="table or json."),
    no_cuped: bool = typer.Option(False, "--no-cuped", help="No pre-period adjustment."),
    journeys: Path | None = typer.Option(
        None, "--journeys", help="Journeys folder (default: the configured one)."
    ),
) -> None:
    """Conversion and revenue per arm of a split, the difference, its 95 % interval, p-value."""
    from trouw.domain.db.engine import session_scope
    from trouw.domain.measure.splits import ReportError, find_journey, split_step, uplift_report

    if output not in ("table", "json"):
        fail(f"--format {output!r}: table or json")
    try:
        length = parse_duration(window)
    except DurationError as exc:
        fail(f"--window {window!r}: {exc}")
    settings = settings_or_fail()
    step_id = step
    if step_id is None:
        try:
            folder = journeys or settings.journeys_dir
            step_id = split_step(find_journey(folder, journey), None).id
        except ReportError as exc:
            fail(str(exc))
    engine = engine_or_fail(settings)
    with session_scope(engine) as session:
        report = uplift_report(
            session,
            journey=journey,
            step=step_id,
            start=_day(start, "--from"),
            end=_day(end, "--to"),
            window=length,
            cuped=not no_cuped,
        )
    body = report.to_json()
    if output == "json":
        sys.stdout.write(json.dumps(body, indent=2) + "\n")
        return
    _print_uplift(body)


def _num(value: Any, fmt: str) -> str:
    return "—" if value is None else format(value, fmt)


def _p(value: float | None) -> str:
    if value is None:
        return "= —"
    return "< 0.001" if value < 0.001 else f"= {value:.3f}"


def _print_uplift(body: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title=f"{body['journey']} / {body['step']}: arms")
    for column in ("arm", "customers", "conversions", "conv. rate", "revenue", "per customer"):
        table.add_column(column, justify="left" if column == "arm" else "right")
    for arm in body["arms"]:
        name = arm["name"] + (" (hold-out)" if arm["holdout"] else "")
        table.add_row(
            name,
            str(arm["customers"]),
            str(arm["conversions"]),
            _num(arm["conversion_rate"] and arm["conversion_rate"] * 100, ".1f") + " %",
            _num(arm["revenue"], ",.2f"),
            _num(arm["revenue_per_customer"], ",.2f"),
        )
    console.print(table)
    if not body["comparisons"]:
        verbatim(body["verdict"], to=console)
    for c in body["comparisons"]:

        def ci(v: list[float] | None, scale: float, fmt: str) -> str:
            return "—" if v is None else f"[{v[0] * scale:{fmt}}, {v[1] * scale:{fmt}}]"

        verbatim(f"{c['arm']} vs {body['reference']} ({c['method']}):", to=console)
        verbatim(
            f"  conversion {_num(c['conversion_diff'] and c['conversion_diff'] * 100, '+.2f')}"
            f" points, 95 % CI {ci(c['ci95'], 100, '+.2f')}, p {_p(c['p_value'])},"
            f" detectable {_num(c['conversion_mde'] and c['conversion_mde'] * 100, '.2f')}",
            to=console,
        )
        verbatim(
            f"  revenue per customer {_num(c['revenue_diff'], '+.2f')},"
            f" 95 % CI {ci(c['revenue_ci95'], 1, '+.2f')}, p {_p(c['revenue_p_value'])},"
            f" detectable {_num(c['revenue_mde'], '.2f')}",
            to=console,
        )
        verbatim(f"  {c['verdict']}", to=console)
