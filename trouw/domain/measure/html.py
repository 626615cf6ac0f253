"""The journey report as one static HTML page: funnel, revenue over time, uplift with intervals.

Charts are pygal's static SVG inlined in the page: no script, no font or style from anywhere
else, so the page opens offline and from a mail attachment alike.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import pygal
from pygal.style import Style

from trouw.domain.charts import static_svg as _svg

_STYLE = Style(
    background="white",
    plot_background="white",
    foreground="#222",
    foreground_strong="#111",
    foreground_subtle="#666",
    colors=("#2b6cb0", "#c05621", "#2f855a", "#6b46c1", "#b83280"),
    font_family="system-ui, sans-serif",
)
_FUNNEL = ("entered", "eligible", "sent", "delivered", "opened", "clicked", "orders")


def _chart(kind: type[pygal.graph.graph.Graph], title: str, **config: Any) -> Any:
    # js=[]: pygal links its tooltip script from the web by default; the page must not.
    return kind(
        title=title,
        style=_STYLE,
        js=[],
        disable_xml_declaration=True,
        width=800,
        height=360,
        **config,
    )


def funnel_svg(journey: dict[str, Any]) -> str:
    """Entered → … → orders for one journey version (messages summed over its steps)."""
    totals = dict.fromkeys(_FUNNEL, 0)
    totals["entered"] = journey["entered"]
    for step in journey["steps"]:
        for name in _FUNNEL[1:-1]:
            totals[name] += step[name]
    totals["orders"] = journey["orders"]
    chart = _chart(
        pygal.HorizontalBar,
        f"{journey['journey']} (version {journey['version'] or '?'})",
        show_legend=False,
    )
    chart.x_labels = list(reversed(_FUNNEL))
    chart.add("count", [totals[name] for name in reversed(_FUNNEL)])
    return _svg(chart)


def revenue_svg(by_day: list[dict[str, Any]]) -> str:
    chart = _chart(pygal.Bar, "Attributed revenue per day", show_legend=False, x_label_rotation=45)
    chart.x_labels = [d["day"] for d in by_day]
    chart.add("revenue", [d["revenue"] for d in by_day])
    return _svg(chart)


def uplift_svg(uplift: dict[str, Any]) -> str:
    """Each arm's difference from the reference with its 95 % interval (conversion points)."""
    chart = _chart(
        pygal.Bar,
        f"{uplift['journey']} / {uplift['step']}: conversion vs {uplift['reference']} "
        "(points, 95 % interval)",
        show_legend=False,
    )
    labels, values = [], []
    for c in uplift["comparisons"]:
        if c["conversion_diff"] is None:
            continue
        labels.append(c["arm"])
        value: dict[str, Any] = {"value": round(c["conversion_diff"] * 100, 2)}
        if c["ci95"]:
            low, high = c["ci95"]
            value["ci"] = {"low": round(low * 100, 2), "high": round(high * 100, 2)}
        values.append(value)
    chart.x_labels = labels
    chart.add("difference", values)
    # The axis must hold the whole interval (pygal scales to the bars alone) and zero.
    ends = [0.0] + [v["value"] for v in values]
    ends += [e for v in values if "ci" in v for e in (v["ci"]["low"], v["ci"]["high"])]
    span = (max(ends) - min(ends)) or 1.0
    chart.range = (min(ends) - 0.05 * span, max(ends) + 0.05 * span)
    return _svg(chart)


_SEGMENT_FUNNEL = ("sent", "delivered", "opened", "clicked", "orders")


def segment_svg(journey: str, rows: list[dict[str, Any]]) -> str:
    """Sent → delivered → opened → clicked → orders of one journey, a series per segment."""
    totals: dict[str, dict[str, int]] = {}
    for row in rows:
        seg = totals.setdefault(row["segment"], dict.fromkeys(_SEGMENT_FUNNEL, 0))
        for name in _SEGMENT_FUNNEL:
            seg[name] += row[name]
    chart = _chart(pygal.Bar, f"{journey}: funnel per segment", legend_at_bottom=True)
    chart.x_labels = [*_SEGMENT_FUNNEL[:-1], "converted (orders)"]
    for segment, counts in sorted(totals.items()):
        chart.add(segment, [counts[name] for name in _SEGMENT_FUNNEL])
    return _svg(chart)


def _segment_sections(rows: list[dict[str, Any]]) -> list[str]:
    parts = []
    journeys = sorted({r["journey"] for r in rows})
    for journey in journeys:
        mine = [r for r in rows if r["journey"] == journey]
        parts.append(f"<section><h2>{html.escape(journey)} per segment</h2>")
        parts.append(f"<figure>{segment_svg(journey, mine)}</figure>")
        table = [
            [
                r["step"],
                r["channel"],
                r["segment"],
                *(str(r[name]) for name in _SEGMENT_FUNNEL),
                f"{r['revenue']:,.2f}",
            ]
            for r in mine
        ]
        header = ["step", "channel", "segment", *_SEGMENT_FUNNEL, "revenue"]
        parts.append(_table(table, header))
        parts.append("</section>")
    return parts


def _table(rows: list[list[str]], header: list[str]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_report(body: dict[str, Any], uplifts: list[dict[str, Any]]) -> str:
    parts = [
        f"<h1>Journey report</h1><p class=period>{html.escape(body['from'][:16])} to "
        f"{html.escape(body['to'][:16])} (UTC) · {body['attributed_orders']} attributed orders</p>"
    ]
    for journey in body["journeys"]:
        parts.append(f"<section><h2>{html.escape(journey['journey'])}</h2>")
        parts.append(f"<figure>{funnel_svg(journey)}</figure>")
        rows = [
            [
                s["step"],
                s["channel"],
                str(s["eligible"]),
                str(s["sent"]),
                str(sum(s["suppressed"].values())),
                str(s["deferred"]),
                str(s["delivered"]),
                str(s["opened"]),
                str(s["clicked"]),
                str(s["orders"]),
                f"{s['revenue']:,.2f}",
            ]
            for s in journey["steps"]
        ]
        header = ["step", "channel", "eligible", "sent", "suppressed", "deferred", "delivered"]
        parts.append(_table(rows, [*header, "opened", "clicked", "orders", "revenue"]))
        for goal in journey.get("goals", []):
            worth = f", worth {goal['value']:,.2f}" if goal["valued"] else ""
            parts.append(
                f"<p class=goal>goal {html.escape(goal['goal'])}: "
                f"{goal['conversions']} conversions{html.escape(worth)}</p>"
            )
        parts.append("</section>")
    if body.get("segments"):
        parts.extend(_segment_sections(body["segments"]))
    if body["revenue_by_day"]:
        parts.append(f"<section><h2>Revenue</h2><figure>{revenue_svg(body['revenue_by_day'])}")
        parts.append("</figure></section>")
    for uplift in uplifts:
        parts.append(f"<section><h2>Uplift: {html.escape(uplift['journey'])}</h2>")
        parts.append(f"<figure>{uplift_svg(uplift)}</figure>")
        verdicts = [f"<li>{html.escape(c['verdict'])}</li>" for c in uplift["comparisons"]]
        parts.append(f"<ul class=verdicts>{''.join(verdicts)}</ul></section>")
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        "<meta name=viewport content='width=device-width, initial-scale=1'>"
        "<title>Trouw journey report</title><style>"
        "body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:60rem;color:#222}"
        "figure{margin:1rem 0}svg{max-width:100%;height:auto}"
        "table{border-collapse:collapse;font-size:.9rem}td,th{padding:.25rem .5rem;"
        "border-bottom:1px solid #ddd;text-align:right}td:first-child,th:first-child,"
        "td:nth-child(2),th:nth-child(2){text-align:left}.period{color:#555}"
        "</style></head><body>" + "".join(parts) + "</body></html>"
    )


def write_report(folder: Path, body: dict[str, Any], uplifts: list[dict[str, Any]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "report.html"
    path.write_text(render_report(body, uplifts), encoding="utf-8")
    return path
