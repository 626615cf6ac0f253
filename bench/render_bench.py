"""Personalised order_confirmation emails per second: precompiled MJML vs compiling per message.

Run: .venv/bin/python bench/render_bench.py [--seconds 2] [--reps 5] [--json]
One process, one core. Three paths, each over the same 1,000 distinct recipients:
  precompiled   TemplateStore.render_email: MJML compiled once, only Jinja2 per recipient
  mjml-per-msg  Jinja2 over the (cached) localised MJML, then mjml2html and the text part, per
                recipient: what the engine would cost if it compiled MJML for every message
  cold-per-msg  no caches at all: read files, expand includes, load strings, compile Jinja2
                and MJML for every message (a naive renderer)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from copy import deepcopy
from decimal import Decimal
from importlib import metadata
from pathlib import Path
from typing import Any

import mjml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from trouw.domain.render import TemplateStore, sample_context  # noqa: E402
from trouw.domain.render import store as store_module  # noqa: E402
from trouw.domain.render.environment import html_environment, line_environment  # noqa: E402
from trouw.domain.render.plaintext import html_to_text  # noqa: E402

NAME = "order_confirmation"
LOCALES = ("nl-BE", "nl-NL", "fr-BE", "en")
FIRST = ["Bart", "Sanne", "Sophie", "Emma", "Jan", "Lotte", "Luc", "Noor", "Elise", "Tom"]


def recipients(count: int) -> list[tuple[str, dict[str, Any]]]:
    """Distinct contexts: names, locales, order ids, quantities and line counts all vary."""
    out = []
    for i in range(count):
        locale = LOCALES[i % len(LOCALES)]
        ctx = deepcopy(sample_context(NAME, locale))
        ctx["customer"]["first_name"] = f"{FIRST[i % len(FIRST)]}{i}"
        ctx["order"]["id"] = f"W-2026-{i:05d}"
        lines = ctx["order"]["lines"][: 1 + i % 3]
        for n, line in enumerate(lines):
            line["qty"] = 1 + (i + n) % 4
            line["line_total"] = line["unit_price"] * line["qty"]
        ctx["order"]["lines"] = lines
        ctx["order"]["total"] = sum((x["line_total"] for x in lines), Decimal("0"))
        out.append((locale, ctx))
    return out


def measure(
    fn: Callable[[str, dict[str, Any]], object], people: list[Any], seconds: float
) -> float:
    done, start = 0, time.perf_counter()
    while True:
        for locale, ctx in people:
            fn(locale, ctx)
            done += 1
            if done % 50 == 0 and time.perf_counter() - start >= seconds:
                return done / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core, as promised

    templates = ROOT / "templates"
    store = TemplateStore(templates)
    people = recipients(1000)
    for locale in LOCALES:
        store.render_email(NAME, locale, sample_context(NAME, locale))  # compile once

    def precompiled(locale: str, ctx: dict[str, Any]) -> object:
        return store.render_email(NAME, locale, ctx)

    html_env, line_env = html_environment(), line_environment()
    mjml_templates = {loc: html_env.from_string(store.localized_mjml(NAME, loc)) for loc in LOCALES}
    subjects = {
        loc: line_env.from_string(
            store._compiled_email(store._email_source(NAME), loc).strings["subject"].text
        )
        for loc in LOCALES
    }

    def mjml_per_message(locale: str, ctx: dict[str, Any]) -> object:
        ctx = {**ctx, "locale": locale}
        html = mjml.mjml2html(mjml_templates[locale].render(ctx))
        return subjects[locale].render(ctx), html, html_to_text(html)

    def cold_per_message(locale: str, ctx: dict[str, Any]) -> object:
        store_module._COMPILED.clear()
        return TemplateStore(templates).render_email(NAME, locale, ctx)

    paths = {
        "precompiled": precompiled,
        "mjml-per-msg": mjml_per_message,
        "cold-per-msg": cold_per_message,
    }
    results: dict[str, list[float]] = {name: [] for name in paths}
    for _rep in range(args.reps):
        for name, fn in paths.items():  # interleaved, so drift hits every path alike
            short = name == "cold-per-msg"
            results[name].append(measure(fn, people[:200] if short else people, args.seconds))
    store_module._COMPILED.clear()

    median = {name: statistics.median(rates) for name, rates in results.items()}
    sample = store.render_email(NAME, "nl-BE", people[0][1])
    report = {
        "template": NAME,
        "recipients": len(people),
        "reps": args.reps,
        "seconds_per_rep": args.seconds,
        "rates_per_s": {k: round(v, 1) for k, v in median.items()},
        "ranges_per_s": {k: [round(min(v)), round(max(v))] for k, v in results.items()},
        "speedup_vs_mjml_per_msg": round(median["precompiled"] / median["mjml-per-msg"], 1),
        "speedup_vs_cold_per_msg": round(median["precompiled"] / median["cold-per-msg"], 1),
        "html_bytes": len(sample.html.encode()),
        "python": platform.python_version(),
        "mjml-python": metadata.version("mjml-python"),
        "jinja2": metadata.version("jinja2"),
        "cpu": platform.processor() or platform.machine(),
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"order_confirmation, {len(people)} distinct recipients, 1 core, median of {args.reps}")
    for name, rate in median.items():
        low, high = report["ranges_per_s"][name]
        print(f"  {name:<13} {rate:>9,.0f} emails/s   ({low:,}-{high:,})")
    print(f"  precompiled is {report['speedup_vs_mjml_per_msg']}x mjml-per-msg")
    print(f"  precompiled is {report['speedup_vs_cold_per_msg']}x cold-per-msg")
    print(f"  HTML size {report['html_bytes']:,} bytes")


if __name__ == "__main__":
    main()
