"""The insight report: segments, the RFM grid, expected next orders and top rules, as data,
terminal tables and one static HTML page with pygal's SVG charts (no script, no network)."""

from __future__ import annotations

import html
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import select

from trouw.domain.charts import static_svg
from trouw.domain.db.engine import session_scope
from trouw.domain.db.models import CustomerInsightRecord
from trouw.domain.insight.store import latest_refresh, load_facts, segment_sizes

# Weeks until the expected next order, in the buckets a marketer plans by.
NEXT_ORDER_BUCKETS: tuple[tuple[str, int | None], ...] = (
    ("overdue", 0),
    ("within 2 weeks", 14),
    ("2-4 weeks", 28),
    ("1-2 months", 61),
    ("2-3 months", 92),
    ("3-6 months", 183),
    ("6-12 months", 366),
    ("later", None),
)
NO_EXPECTATION = "not expected"


@dataclass
class Report:
    refresh_id: str | None
    as_of: datetime | None
    customers: int
    segments: list[dict[str, Any]]
    grid: dict[tuple[int, int], int]  # (r, f) -> customers
    next_orders: list[tuple[str, int]]
    rules: list[Any] = field(default_factory=list)
    # The refresh's ModelChoice.as_dict(): which model answered each figure, and why.
    models: dict[str, Any] = field(default_factory=dict)


# The forecast figures a model is chosen for, as a marketer reads them.
MODEL_FIGURES: tuple[tuple[str, str], ...] = (
    ("expected_orders", "expected orders"),
    ("p_order", "P(order) and next-order date"),
)


def model_rows(models: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(figure, model, why, backtest scores) per forecast figure; empty for refreshes that did
    not record their choice."""
    rows = []
    for key, label in MODEL_FIGURES:
        chosen = models.get(key)
        if not chosen:
            continue
        metric = chosen.get("metric") or "score"
        scores = ", ".join(f"{name} {value:.3f}" for name, value in chosen["scores"].items())
        rows.append(
            (label, chosen["model"], chosen["reason"], f"{metric}: {scores}" if scores else "-")
        )
    return rows


def backtest_note(models: dict[str, Any]) -> str:
    """What the backtest held back and scored, in one line."""
    if not models:
        return "This refresh did not record its model choice (it ran before the choice was kept)."
    if not models.get("window_days"):
        return "No backtest: the shop's history is too short to hold back a window."
    return (
        f"Chosen by a backtest in the shop's own history: the last {models['window_days']} days "
        f"held back, {models['customers']} customers before them, {models['buyers']} of whom "
        "ordered in those days."
    )


def next_order_bucket(expected: datetime | None, as_of: datetime) -> str:
    if expected is None:
        return NO_EXPECTATION
    days = (expected - as_of).total_seconds() / 86400
    for label, limit in NEXT_ORDER_BUCKETS:
        if limit is None or days < limit:
            return label
    return NEXT_ORDER_BUCKETS[-1][0]


def build_report(engine: Engine, *, rules: int = 10, min_support: float = 0.01) -> Report:
    """The report of the last refresh (rules from the orders as of that refresh)."""
    from trouw.domain.insight import association_rules

    with session_scope(engine) as session:
        latest = latest_refresh(session)
        sizes = segment_sizes(session)
        grid: Counter[tuple[int, int]] = Counter()
        buckets: Counter[str] = Counter()
        rows = session.exec(
            select(
                CustomerInsightRecord.r,
                CustomerInsightRecord.f,
                CustomerInsightRecord.expected_next_order_at,
                CustomerInsightRecord.as_of,
            )
        )
        for r, f, expected, as_of in rows:
            grid[(r, f)] += 1
            buckets[next_order_bucket(expected, as_of)] += 1
    order = [label for label, _ in NEXT_ORDER_BUCKETS] + [NO_EXPECTATION]
    found = []
    if latest is not None:
        facts = load_facts(engine, as_of=latest.as_of)
        found = association_rules(facts.lines, level="product", min_support=min_support)
        found.sort(key=lambda rule: (-rule.lift, -rule.support, rule.antecedent, rule.consequent))
    return Report(
        refresh_id=latest.id if latest else None,
        as_of=latest.as_of if latest else None,
        customers=sum(size["customers"] for size in sizes),
        segments=sizes,
        grid=dict(grid),
        next_orders=[(label, buckets.get(label, 0)) for label in order],
        rules=found[:rules],
        models=dict(latest.models) if latest is not None else {},
    )


def print_report(report: Report, console: Any) -> None:
    """The report as terminal tables."""
    from rich.table import Table

    if report.refresh_id is None:
        console.print("No insight yet: run `trouw insight refresh` first.")
        return
    console.print(
        f"Insight as of {report.as_of:%Y-%m-%d %H:%M} UTC ({report.refresh_id}), "
        f"{report.customers} customers"
    )
    segments = Table(title="Segments")
    for name in ("segment", "customers", "share", "revenue", "avg expected value"):
        segments.add_column(name, justify="left" if name == "segment" else "right")
    total = max(report.customers, 1)
    for size in report.segments:
        segments.add_row(
            size["segment"],
            str(size["customers"]),
            f"{100 * size['customers'] / total:.1f} %",
            f"{size['revenue']:,.2f}",
            f"{size['expected_value_avg']:,.2f}",
        )
    console.print(segments)
    grid = Table(title="RFM grid: customers by recency (rows) and frequency (columns) score")
    grid.add_column("R \\ F")
    for f in range(1, 6):
        grid.add_column(str(f), justify="right")
    for r in range(5, 0, -1):
        grid.add_row(str(r), *(str(report.grid.get((r, f), 0)) for f in range(1, 6)))
    console.print(grid)
    nexts = Table(title="Expected next order")
    nexts.add_column("when")
    nexts.add_column("customers", justify="right")
    for label, count in report.next_orders:
        nexts.add_row(label, str(count))
    console.print(nexts)
    models = Table(title="Models in use")
    for name in ("figure", "model", "why", "backtest"):
        models.add_column(name)
    for row in model_rows(report.models):
        models.add_row(*row)
    console.print(models)
    console.print(backtest_note(report.models))
    rules = Table(title="Top rules (bought together), by lift")
    for name in ("antecedent", "consequent", "support", "confidence", "lift"):
        rules.add_column(name, justify="left" if name in ("antecedent", "consequent") else "right")
    for rule in report.rules:
        rules.add_row(
            rule.antecedent,
            rule.consequent,
            f"{rule.support:.4f}",
            f"{rule.confidence:.3f}",
            f"{rule.lift:.2f}",
        )
    console.print(rules)


def _style() -> Any:
    from pygal.style import Style

    return Style(
        background="white",
        plot_background="white",
        foreground="#1f2d22",
        foreground_strong="#1f2d22",
        foreground_subtle="#6b756d",
        colors=("#3d6b45", "#c07f2c", "#5b7fa6", "#a64d4d", "#7d6b9e"),
        font_family="Helvetica, Arial, sans-serif",
    )


def charts(report: Report) -> dict[str, str]:
    """The report's charts as inline SVG, drawn by pygal."""
    import pygal

    options = {
        "style": _style(),
        "js": [],
        "width": 760,
        "height": 380,
        "show_legend": False,
        "print_values": True,
        "print_values_position": "top",
        "truncate_label": -1,
    }
    customers = pygal.Bar(title="Customers per segment", **options)
    customers.x_labels = [size["segment"] for size in report.segments]
    customers.add("customers", [size["customers"] for size in report.segments])
    revenue = pygal.Bar(
        title="Revenue per segment", value_formatter=lambda v: f"{v:,.0f}", **options
    )
    revenue.x_labels = [size["segment"] for size in report.segments]
    revenue.add("revenue", [size["revenue"] for size in report.segments])
    nexts = pygal.Bar(title="Expected next order", x_label_rotation=20, **options)
    nexts.x_labels = [label for label, _ in report.next_orders]
    nexts.add("customers", [count for _, count in report.next_orders])
    return {
        "customers": static_svg(customers),
        "revenue": static_svg(revenue),
        "next_orders": static_svg(nexts),
    }


def _grid_html(report: Report) -> str:
    top = max(report.grid.values(), default=1) or 1
    rows = []
    for r in range(5, 0, -1):
        cells = []
        for f in range(1, 6):
            count = report.grid.get((r, f), 0)
            shade = 0.08 + 0.85 * count / top
            ink = "#fff" if shade > 0.5 else "#1f2d22"
            cells.append(
                f'<td style="background:rgba(61,107,69,{shade:.2f});color:{ink}">{count}</td>'
            )
        rows.append(f"<tr><th>R {r}</th>{''.join(cells)}</tr>")
    head = "".join(f"<th>F {f}</th>" for f in range(1, 6))
    return f'<table class="grid"><tr><th></th>{head}</tr>{"".join(rows)}</table>'


def write_html(report: Report, directory: Path) -> Path:
    """index.html in `directory`: every chart inline, nothing fetched when it is opened."""
    directory.mkdir(parents=True, exist_ok=True)
    esc = html.escape
    if report.refresh_id is None:
        body = "<p>No insight yet: run <code>trouw insight refresh</code> first.</p>"
    else:
        svg = charts(report)
        total = max(report.customers, 1)
        segment_rows = "".join(
            f"<tr><td>{esc(s['segment'])}</td><td>{s['customers']}</td>"
            f"<td>{100 * s['customers'] / total:.1f} %</td><td>{s['revenue']:,.2f}</td>"
            f"<td>{s['expected_value_avg']:,.2f}</td></tr>"
            for s in report.segments
        )
        rule_rows = (
            "".join(
                f"<tr><td>{esc(rule.antecedent)}</td><td>{esc(rule.consequent)}</td>"
                f"<td>{rule.support:.4f}</td><td>{rule.confidence:.3f}</td><td>{rule.lift:.2f}</td></tr>"
                for rule in report.rules
            )
            or '<tr><td colspan="5">No rule reaches the minimum support.</td></tr>'
        )
        model_html = "".join(
            "<tr>" + "".join(f"<td>{esc(cell)}</td>" for cell in row) + "</tr>"
            for row in model_rows(report.models)
        )
        as_of = f"{report.as_of:%Y-%m-%d %H:%M} UTC" if report.as_of else ""
        body = f"""
<p class="meta">As of {esc(as_of)} · {report.customers} customers · refresh {esc(report.refresh_id)}</p>
<section><h2>Segments</h2>
<div class="charts"><figure>{svg["customers"]}</figure><figure>{svg["revenue"]}</figure></div>
<table><tr><th>segment</th><th>customers</th><th>share</th><th>revenue</th>
<th>avg expected value</th></tr>{segment_rows}</table></section>
<section><h2>RFM grid</h2><p>Customers by recency score (rows, 5 = most recent) and frequency
score (columns, 5 = most frequent).</p>{_grid_html(report)}</section>
<section><h2>Expected next order</h2><figure>{svg["next_orders"]}</figure></section>
<section><h2>Models in use</h2><p>{esc(backtest_note(report.models))}</p>
<table class="models"><tr><th>figure</th><th>model</th><th>why</th><th>backtest</th></tr>
{model_html}</table></section>
<section><h2>Top rules</h2><p>Products bought together, by lift.</p>
<table class="rules"><tr><th>bought</th><th>also bought</th><th>support</th><th>confidence</th><th>lift</th></tr>
{rule_rows}</table></section>"""
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Customer insight</title>
<style>
body {{ font-family: Helvetica, Arial, sans-serif; color: #1f2d22; background: #f4f1ea;
       margin: 0 auto; max-width: 1600px; padding: 24px; }}
h1 {{ margin: 0 0 4px; }} .meta {{ color: #6b756d; margin: 0 0 24px; }}
section {{ background: #fff; border-radius: 8px; padding: 16px 24px; margin-bottom: 24px; }}
.charts {{ display: flex; flex-wrap: wrap; gap: 16px; }}
figure {{ margin: 0; max-width: 760px; flex: 1 1 480px; }} figure svg {{ width: 100%; height: auto; }}
table {{ border-collapse: collapse; margin-top: 12px; }}
th, td {{ padding: 6px 12px; border-bottom: 1px solid #e3ded3; text-align: right; }}
th:first-child, td:first-child {{ text-align: left; }}
.grid td {{ width: 64px; text-align: center; font-weight: bold; }}
.rules td:nth-child(2), .rules th:nth-child(2) {{ text-align: left; }}
.models td, .models th {{ text-align: left; }}
</style></head>
<body><h1>Customer insight</h1>{body}</body></html>
"""
    path = directory / "index.html"
    path.write_text(page, encoding="utf-8")
    return path
