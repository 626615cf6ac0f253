"""`trouw insight customers|rules|recommend|customer|report|refresh` (docs/insight.md)."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import typer

from trouw.commands.terminal import console, engine_or_fail, err, fail, settings_or_fail, verbatim
from trouw.language.journey.plain import jsonable
from trouw.settings import Settings

app = typer.Typer(
    help="Customer insight: RFM segments, expected next order and value, bought together.",
    no_args_is_help=True,
)


class Format(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


class Level(StrEnum):
    product = "product"
    category = "category"


# The columns of `trouw insight customers`, in order; the table shows the first thirteen.
CUSTOMER_COLUMNS = (
    "customer_id",
    "orders",
    "recency_days",
    "monetary",
    "r",
    "f",
    "m",
    "segment",
    "p_active",
    "p_order",
    "expected_orders",
    "expected_next_order_at",
    "expected_value",
    "frequency",
    "monetary_avg",
    "first_order_at",
    "last_order_at",
    "weekday",
    "hour",
    "season",
    "sale_buyer",
    "favourite_category",
    "breadth",
    "model",
)
TABLE_COLUMNS = 13
RULE_COLUMNS = ("antecedent", "consequent", "support", "confidence", "lift")
RECOMMEND_COLUMNS = ("customer_id", "rank", "sku")
TEXT_COLUMNS = frozenset({"customer_id", "segment", "antecedent", "consequent", "sku"})

AS_OF = typer.Option(
    None,
    "--as-of",
    help="Ignore every order after this date (YYYY-MM-DD: the end of that day in the shop's "
    "time zone; or an ISO 8601 moment). Default: now.",
)
FORMAT = typer.Option(Format.table, "--format", help="table, csv or json.")
OUT = typer.Option(None, "--out", help="Write to this file instead of the terminal.")


def parse_as_of(value: str | None, settings: Settings) -> datetime:
    """The cut-off moment: a date means the end of that day where the shop is."""
    if value is None:
        return datetime.now(UTC)
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            zone = ZoneInfo(settings.default_timezone)
            return datetime.combine(day + timedelta(days=1), time(0), zone).astimezone(UTC)
        moment = datetime.fromisoformat(value)
    except ValueError:
        fail(f"--as-of {value!r}: give a date (2026-03-31) or an ISO 8601 moment")
    if moment.tzinfo is None:
        fail(f"--as-of {value!r}: a moment needs its offset, e.g. 2026-03-31T23:00:00+02:00")
    return moment.astimezone(UTC)


def _cell(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    return value


def emit(
    rows: Sequence[dict[str, Any]],
    columns: Sequence[str],
    fmt: Format,
    out: Path | None,
    *,
    title: str,
    shown: int | None = None,
) -> None:
    """Rows as a terminal table, CSV or a JSON array; to --out or stdout."""
    if fmt is Format.json:
        text = json.dumps([{c: jsonable(_cell(row.get(c))) for c in columns} for row in rows])
    elif fmt is Format.csv:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            writer.writerow(["" if row.get(c) is None else _cell(row.get(c)) for c in columns])
        text = buffer.getvalue()
    else:
        from rich.table import Table

        table = Table(title=title)
        visible = columns[: shown or len(columns)]
        for name in visible:
            table.add_column(name, justify="left" if name in TEXT_COLUMNS else "right")
        for row in rows:
            table.add_row(*(_table_cell(row.get(name)) for name in visible))
        if out is None:
            console.print(table)
            return
        from rich.console import Console

        with out.open("w", encoding="utf-8") as handle:
            Console(file=handle, width=200).print(table)
        return
    if out is None:
        verbatim(text.rstrip("\n"), to=console)
    else:
        out.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")


def _table_cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 10 else f"{value:,.2f}"
    if isinstance(value, datetime):
        return f"{value:%Y-%m-%d}"
    return str(value)


def insight_row(insight: Any) -> dict[str, Any]:
    row = dataclasses.asdict(insight)
    row["monetary"] = row["monetary_total"]
    return row


@app.command("customers")
def customers(
    as_of: str | None = AS_OF,
    horizon: int | None = typer.Option(
        None, "--horizon", min=1, help="Days ahead for p_order and expected_orders."
    ),
    fmt: Format = FORMAT,
    out: Path | None = OUT,
) -> None:
    """One row per customer, scored from the orders up to --as-of (nothing is stored)."""
    from trouw.domain.insight.store import score_now

    settings = settings_or_fail()
    engine = engine_or_fail(settings)
    moment = parse_as_of(as_of, settings)
    _facts, insights = score_now(engine, settings, as_of=moment, horizon_days=horizon)
    rows = [insight_row(insight) for insight in insights]
    emit(
        rows,
        CUSTOMER_COLUMNS,
        fmt,
        out,
        title=f"Customers as of {moment:%Y-%m-%d %H:%M} UTC",
        shown=TABLE_COLUMNS,
    )


@app.command("rules")
def rules(
    level: Level = typer.Option(Level.product, "--level", help="product or category."),
    min_support: float = typer.Option(
        0.001, "--min-support", min=0.0, max=1.0, help="Share of baskets holding both."
    ),
    min_confidence: float = typer.Option(0.0, "--min-confidence", min=0.0, max=1.0),
    as_of: str | None = AS_OF,
    fmt: Format = FORMAT,
    out: Path | None = OUT,
) -> None:
    """Association rules (bought together): antecedent, consequent, support, confidence, lift."""
    from trouw.domain.insight import association_rules
    from trouw.domain.insight.store import load_facts

    settings = settings_or_fail()
    engine = engine_or_fail(settings)
    facts = load_facts(engine, as_of=parse_as_of(as_of, settings) if as_of else None)
    found = association_rules(
        facts.lines,
        level=level.value,
        min_support=min_support,
        min_confidence=min_confidence,
    )
    found.sort(key=lambda rule: (-rule.lift, -rule.support, rule.antecedent, rule.consequent))
    emit(
        [dataclasses.asdict(rule) for rule in found],
        RULE_COLUMNS,
        fmt,
        out,
        title=f"Rules at {level.value} level (min support {min_support})",
    )


@app.command("recommend")
def recommend_command(
    customer: list[str] = typer.Option(
        [], "--customer", help="A customer id (repeat for several)."
    ),
    every: bool = typer.Option(False, "--all", help="Every customer with an order."),
    top: int = typer.Option(5, "--top", min=1, max=100),
    as_of: str | None = AS_OF,
    fmt: Format = FORMAT,
    out: Path | None = OUT,
) -> None:
    """Products to suggest per customer: never one they bought; best sellers for newcomers."""
    from trouw.domain.insight import recommend
    from trouw.domain.insight.store import load_facts

    if bool(customer) == every:
        fail("give --customer ID or --all")
    settings = settings_or_fail()
    engine = engine_or_fail(settings)
    facts = load_facts(engine, as_of=parse_as_of(as_of, settings) if as_of else None)
    found = recommend(facts.lines, customer_ids=None if every else customer, top=top)
    rows = [
        {"customer_id": customer_id, "rank": rank, "sku": sku}
        for customer_id, skus in sorted(found.items())
        for rank, sku in enumerate(skus, start=1)
    ]
    emit(rows, RECOMMEND_COLUMNS, fmt, out, title="Recommendations")


WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def describe(view: dict[str, Any]) -> list[str]:
    """One customer in words, for an operator at the till or on the phone."""
    lines = [
        f"Customer {view['customer_id']}: {view['segment'].replace('_', ' ')} "
        f"(R {view['r']} F {view['f']} M {view['m']}) since {view['segment_since']:%Y-%m-%d}",
        f"{view['orders']} order(s) from {view['first_order_at']:%Y-%m-%d} to "
        f"{view['last_order_at']:%Y-%m-%d}, last one {view['recency_days']} days ago; "
        f"spent {view['monetary_total']:,.2f} in all, {view['monetary_avg']:,.2f} per order",
        f"Still active: {100 * view['p_active']:.0f} %; orders within {view['horizon_days']} days: "
        f"{100 * view['p_order']:.0f} % ({view['expected_orders']:.2f} order(s) expected)",
    ]
    expected = view["expected_next_order_at"]
    lines.append(
        f"Next order expected around {expected:%Y-%m-%d}" if expected else "No next order expected"
    )
    lines.append(f"Expected value over the next 12 months: {view['expected_value']:,.2f}")
    moment = f"Usually buys on {WEEKDAYS[view['weekday']]} around {view['hour']:02}:00, "
    moment += f"mostly in {view['season']}"
    lines.append(moment + ("; a sale buyer" if view["sale_buyer"] else ""))
    favourite = view["favourite_category"] or "none"
    lines.append(f"Favourite category: {favourite}; assortment: {view['breadth']}")
    if view["recommendations"]:
        picks = ", ".join(f"{p['name']} ({p['sku']})" for p in view["recommendations"])
        lines.append(f"Might like: {picks}")
    history = view["segment_history"]
    if len(history) > 1:
        steps = " -> ".join(f"{h['segment']} ({h['at']:%Y-%m-%d})" for h in history[-4:])
        lines.append(f"Segment history: {steps}")
    lines.append(f"As of {view['as_of']:%Y-%m-%d %H:%M} UTC, model {view['model']}")
    return lines


@app.command("customer")
def customer_command(
    customer_id: str = typer.Argument(..., help="The customer id."),
    as_json: bool = typer.Option(False, "--json", help="The API's JSON instead of words."),
) -> None:
    """One customer in words (the same as GET /v1/customers/{id}/insight with --json)."""
    from trouw.domain.db.engine import session_scope
    from trouw.domain.insight.store import customer_view

    settings = settings_or_fail()
    engine = engine_or_fail(settings)
    with session_scope(engine) as session:
        view = customer_view(session, customer_id)
    if view is None:
        fail(f"no insight for customer {customer_id!r}: unknown, or not scored by a refresh yet")
    if as_json:
        verbatim(json.dumps(jsonable(view)), to=console)
        return
    for line in describe(view):
        verbatim(line, to=console)


@app.command("report")
def report_command(
    html_dir: Path | None = typer.Option(
        None, "--html", help="Also write the report as a page (index.html) in this folder."
    ),
    min_support: float = typer.Option(0.01, "--min-support", min=0.0, max=1.0),
) -> None:
    """Segments and revenue, the RFM grid, expected next orders and top rules."""
    from trouw.domain.insight.report import build_report, print_report, write_html

    settings = settings_or_fail()
    engine = engine_or_fail(settings)
    report = build_report(engine, min_support=min_support)
    print_report(report, console)
    if html_dir is not None:
        path = write_html(report, html_dir)
        console.print(f"Report page: {path}")


@app.command("refresh")
def refresh_command(
    as_of: str | None = AS_OF,
    horizon: int | None = typer.Option(None, "--horizon", min=1),
) -> None:
    """Refresh insight now: the same workflow as the nightly schedule, with progress shown.

    This command runs a worker of its own while it waits, so it works with or without a
    running `trouw worker`; with workers running, the chunks spread over all of them."""
    import asyncio

    from trouw.commands.cli import _run

    settings = settings_or_fail()
    engine_or_fail(settings)
    moment = parse_as_of(as_of, settings) if as_of else None

    async def main() -> None:
        from activities.services import Services
        from trouw.domain.insight.refresh import refresh_now
        from trouw.language.contracts import InsightProgress
        from trouw.stack.runtime import temporal_client
        from trouw.stack.worker import build_worker

        client, server = await temporal_client(settings)
        try:
            worker = build_worker(client, Services.from_settings(settings))
            shown: list[str] = []

            def progress(state: InsightProgress) -> None:
                line = {
                    "starting": "starting",
                    "scoring": "scoring every customer",
                    "applying": f"storing chunk {state.chunks_done}/{state.chunks} "
                    f"({state.customers} customers)",
                    "done": "done",
                }[state.phase]
                if not shown or shown[-1] != line:
                    shown.append(line)
                    err.print(line, highlight=False)

            async with worker:
                result = await refresh_now(
                    client, settings, as_of=moment, horizon_days=horizon, progress=progress
                )
            console.print(
                f"Refreshed {result.customers} customers as of {result.as_of:%Y-%m-%d %H:%M} UTC "
                f"in {result.seconds:.1f} s: {result.changes} segment change(s), "
                f"{result.events} event(s) for journeys ({result.refresh_id})"
            )
        finally:
            if server is not None:
                await asyncio.to_thread(server.stop)

    _run(main)
